package cluster

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"ironbark/controller"
	"ironbark/internal/nodeapi"
	"ironbark/internal/store"
)

// networkMigrations add each cluster's networking: its mode, its own
// instance subnet ("" = the cloud's instanceSubnet, or controller.json's
// clusterSubnets entry) and whether launches get a public address.
var networkMigrations = []store.Migration{
	{ID: "cluster/0021-cluster-network-mode", SQL: `ALTER TABLE clusters ADD COLUMN network_mode TEXT NOT NULL DEFAULT 'MANAGED-NOVLAN'`},
	{ID: "cluster/0022-cluster-instance-subnet", SQL: `ALTER TABLE clusters ADD COLUMN instance_subnet TEXT NOT NULL DEFAULT ''`},
	{ID: "cluster/0023-cluster-public-ips", SQL: `ALTER TABLE clusters ADD COLUMN public_ips BIGINT NOT NULL DEFAULT 0`},
	// MANAGED mode: the VLAN ids the cluster's security groups take, and
	// how many addresses each group's slice of the subnet has (0: auto).
	{ID: "cluster/0024-cluster-vlans", SQL: `
ALTER TABLE clusters ADD COLUMN vlan_min BIGINT NOT NULL DEFAULT 0;
ALTER TABLE clusters ADD COLUMN vlan_max BIGINT NOT NULL DEFAULT 0;
ALTER TABLE clusters ADD COLUMN addrs_per_net BIGINT NOT NULL DEFAULT 0;
`},
}

// Network is a cluster's instance networking.
type Network struct {
	// Mode is one of nodeapi.Modes (MANAGED-NOVLAN when empty).
	Mode string
	// Subnet is the cluster's private instance subnet, a CIDR; "" means
	// the one the controller's settings give it.
	Subnet string
	// PublicIPs: every launch in the cluster gets a public address from
	// the pool unless it asks for none (Eucalyptus' default; off here
	// unless the operator turns it on).
	PublicIPs bool
	// VLANs is the range of VLAN ids MANAGED mode gives the cluster's
	// security groups, one each ({0, 0}: controller.DefaultVLANs).
	VLANs [2]int
	// AddrsPerNet is the size of each security group's slice of the
	// instance subnet in MANAGED mode, a power of two (0: auto, see
	// controller.GroupNetBits), Eucalyptus' VNET_ADDRSPERNET.
	AddrsPerNet int
}

// CheckMode says whether mode is a networking mode ("" is the default).
func CheckMode(mode string) (string, error) {
	if mode == "" {
		return nodeapi.ModeManagedNoVLAN, nil
	}
	m := strings.ToUpper(mode)
	if !slices.Contains(nodeapi.Modes(), m) {
		return "", fmt.Errorf("network mode %q: want one of %s", mode, strings.Join(nodeapi.Modes(), ", "))
	}
	return m, nil
}

// NextSubnet is the first subnet of base's size after base that overlaps
// none of used (for a new cluster, so that each has its own); false when
// none is left in 10.0.0.0/8 and base's own /8.
func NextSubnet(base netip.Prefix, used []netip.Prefix) (netip.Prefix, bool) {
	size := uint32(1) << (32 - base.Bits())
	b := base.Addr().As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	top := v&0xff000000 | 0x00ffffff
	for next := v + size; next > v && next+size-1 <= top; next += size {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(next >> 24), byte(next >> 16), byte(next >> 8), byte(next)}), base.Bits())
		if !slices.ContainsFunc(used, p.Overlaps) {
			return p, true
		}
	}
	return netip.Prefix{}, false
}

// SetNetwork changes a cluster's networking. reserved are subnets held
// outside the clusters table (the cloud's default instanceSubnet and
// controller.json's clusterSubnets, by owner); a subnet that overlaps
// another cluster's or a reserved one is refused and nothing changes.
// A cluster's subnet cannot change while it has live instances.
func (r *Registry) SetNetwork(ctx context.Context, name string, n Network, reserved map[string]string) error {
	mode, err := CheckMode(n.Mode)
	if err != nil {
		return err
	}
	if n.Subnet != "" {
		if _, err := controller.ParseSubnet(n.Subnet); err != nil {
			return err
		}
	}
	if err := controller.CheckVLANs(n.VLANs, n.AddrsPerNet); err != nil {
		return err
	}
	defer r.nodes.forgetClusters()
	return r.db.InTx(ctx, func(tx *store.Tx) error {
		old, err := scanCluster(tx.QueryRow(ctx, `SELECT `+clusterCols+` FROM clusters WHERE name = ?`, name))
		if err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("%w: %s", ErrNoSuchCluster, name)
			}
			return fmt.Errorf("cluster %s: %w", name, err)
		}
		live := func() (int, error) {
			var n int
			err := tx.QueryRow(ctx, `SELECT COUNT(*) FROM instances WHERE zone = ? AND state <> 'terminated'`, name).Scan(&n)
			return n, err
		}
		// MANAGED instances sit on their group's VLAN and slice of the
		// subnet: entering or leaving the mode, or carving the subnet
		// anew, would strand the live ones.
		oldManaged, newManaged := old.Network.Mode == nodeapi.ModeManaged, mode == nodeapi.ModeManaged
		carve := oldManaged && newManaged && (n.VLANs != old.Network.VLANs || n.AddrsPerNet != old.Network.AddrsPerNet)
		if oldManaged != newManaged || carve {
			if k, err := live(); err != nil || k > 0 {
				if err != nil {
					return fmt.Errorf("cluster %s: %w", name, err)
				}
				return fmt.Errorf("cluster %s has %d live instances: terminate them before changing its MANAGED networking (mode, VLANs, addresses per group)", name, k)
			}
			// Nothing live: each group gets its network anew at its next
			// launch, under the new settings.
			if _, err := tx.Exec(ctx, `DELETE FROM group_networks WHERE zone = ?`, name); err != nil {
				return fmt.Errorf("cluster %s group networks: %w", name, err)
			}
		}
		if n.Subnet != "" && n.Subnet != old.Network.Subnet {
			all := map[string]string{"cluster " + name: n.Subnet}
			for o, s := range reserved {
				if s != "" && o != "cluster "+name {
					all[o] = s
				}
			}
			rows, err := tx.Query(ctx, `SELECT name, instance_subnet FROM clusters WHERE name <> ? AND instance_subnet <> ''`, name)
			if err != nil {
				return err
			}
			for rows.Next() {
				var cn, s string
				if err := rows.Scan(&cn, &s); err != nil {
					rows.Close()
					return err
				}
				all["cluster "+cn] = s
			}
			rows.Close()
			if err := controller.CheckSubnets(all); err != nil {
				return err
			}
			if k, err := live(); err == nil && k > 0 {
				return fmt.Errorf("cluster %s has %d live instances on its subnet: terminate them before moving it", name, k)
			}
		}
		subnet := n.Subnet
		if subnet == "" {
			subnet = old.Network.Subnet
		}
		if newManaged {
			if err := controller.CheckGroupNets(subnet, n.VLANs, n.AddrsPerNet); err != nil {
				return fmt.Errorf("cluster %s: %w", name, err)
			}
		}
		_, err = tx.Exec(ctx, `UPDATE clusters SET network_mode = ?, instance_subnet = ?, public_ips = ?,
			vlan_min = ?, vlan_max = ?, addrs_per_net = ? WHERE name = ?`,
			mode, subnet, boolInt(n.PublicIPs), n.VLANs[0], n.VLANs[1], n.AddrsPerNet, name)
		if err != nil {
			return fmt.Errorf("set network of %s: %w", name, err)
		}
		return nil
	})
}

// ZoneNetworks implements the EC2 side's view of each zone's networking
// (controller.ZoneNetworker).
func (s *Service) ZoneNetworks(ctx context.Context) (map[string]controller.ZoneNetwork, error) {
	// The EC2 side launches on a fresh read (the addresses it draws
	// come from the subnet it reads); a node's answer, built in the
	// node lane, may use the list as cached, like placement: every
	// launched node's answer read it, a query each.
	var cs []Cluster
	var err error
	if store.InNodeLane(ctx) {
		cs, err = s.clusterList(ctx)
	} else {
		cs, err = s.Clusters(ctx)
	}
	if err != nil {
		return nil, err
	}
	out := make(map[string]controller.ZoneNetwork, len(cs))
	for _, c := range cs {
		out[c.Name] = controller.ZoneNetwork{Mode: c.Network.Mode, Subnet: c.Network.Subnet, PublicIPs: c.Network.PublicIPs,
			VLANs: c.Network.VLANs, AddrsPerNet: c.Network.AddrsPerNet}
	}
	return out, nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// RemoveCluster forgets a cluster that has no nodes and no tokens (a
// cluster add whose networking was refused).
func (r *Registry) RemoveCluster(ctx context.Context, name string) error {
	defer r.nodes.forgetClusters()
	_, err := r.db.Exec(ctx, `DELETE FROM clusters WHERE name = ?
		AND NOT EXISTS (SELECT 1 FROM nodes WHERE cluster = ?) AND NOT EXISTS (SELECT 1 FROM node_tokens WHERE cluster = ?)`, name, name, name)
	if err != nil {
		return fmt.Errorf("remove cluster %s: %w", name, err)
	}
	return nil
}
