package controller

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/bits"
	"net/netip"

	"ironbark/controller/ec2"
	"ironbark/internal/store"
)

// MANAGED mode gives each security group its own network in each cluster,
// as Eucalyptus' MANAGED mode did: a VLAN id from the cluster's range and
// a slice of the cluster's instance subnet. The group's instances take
// addresses in that slice; on each node they sit on a bridge whose uplink
// carries the group's VLAN tag on the node's private network, so groups
// are apart at layer 2 and reach each other through public addresses
// only. An instance's network is its first security group's (the first
// one named at launch).
//
// A group's network is the index of its slice (group_networks.idx): the
// slice is the idx-th block of AddrsPerNet addresses of the subnet and
// the VLAN is the range's first id plus idx. The cluster's settings do not
// change while it has live instances (cluster.Registry.SetNetwork), so
// the index alone says both.

// DefaultVLANs is the VLAN range of a MANAGED cluster that names none: 1
// is many switches' native VLAN, and the first few are often taken by a
// site's own networks.
var DefaultVLANs = [2]int{10, 4094}

// groupNetMigration adds the group networks and the instance's record of
// the one it sits on (its VLAN and subnet, as sent to its node).
func groupNetMigration() store.Migration {
	return store.Migration{ID: "controller/0019-group-networks", SQL: `
CREATE TABLE group_networks (
	zone     TEXT NOT NULL,
	group_id TEXT NOT NULL,
	idx      BIGINT NOT NULL,
	PRIMARY KEY (zone, group_id),
	UNIQUE (zone, idx)
);
ALTER TABLE instances ADD COLUMN vlan BIGINT NOT NULL DEFAULT 0;
ALTER TABLE instances ADD COLUMN net_subnet TEXT NOT NULL DEFAULT '';
`}
}

// CheckVLANs checks a MANAGED cluster's VLAN range and addresses per
// group ({0, 0} and 0: the defaults).
func CheckVLANs(vlans [2]int, addrsPerNet int) error {
	if vlans != [2]int{} && (vlans[0] < 1 || vlans[1] > 4094 || vlans[0] > vlans[1]) {
		return fmt.Errorf("VLANs %d-%d: want a range inside 1-4094, low to high", vlans[0], vlans[1])
	}
	if addrsPerNet != 0 && (addrsPerNet < 16 || bits.OnesCount(uint(addrsPerNet)) != 1) {
		return fmt.Errorf("addresses per group %d: want a power of two, 16 or more", addrsPerNet)
	}
	return nil
}

// CheckGroupNets checks that a MANAGED cluster's subnet holds groups of
// addrsPerNet addresses; subnet "" is the cloud's default one.
func CheckGroupNets(subnet string, vlans [2]int, addrsPerNet int) error {
	if err := CheckVLANs(vlans, addrsPerNet); err != nil {
		return err
	}
	if subnet == "" {
		subnet = DefaultInstanceSubnet
	}
	p, err := netip.ParsePrefix(subnet)
	if err != nil {
		return fmt.Errorf("instance subnet %q: %w", subnet, err)
	}
	if addrsPerNet > 1<<(32-p.Bits()) {
		return fmt.Errorf("addresses per group %d: more than the instance subnet %s holds", addrsPerNet, p)
	}
	return nil
}

// GroupNetBits is the prefix length of a group's slice of a MANAGED
// cluster's subnet: addrsPerNet's, or by default 256 addresses per group
// (a /24 in the default /16: 256 groups of 253 instances), at most the
// subnet's sixteenth for small subnets (a /24 cluster: 16 groups of 13),
// and never past a /28.
func GroupNetBits(subnet netip.Prefix, addrsPerNet int) int {
	if addrsPerNet > 0 {
		return 32 - bits.TrailingZeros(uint(addrsPerNet))
	}
	return min(max(24, subnet.Bits()+4), 28)
}

// groupNets is how many group networks a MANAGED zone has: its slices,
// at most one per VLAN of its range.
func (z zoneNet) groupNets() int {
	vlans := z.vlans[1] - z.vlans[0] + 1
	slices := 1 << min(z.netBits-z.subnet.Bits(), 20)
	return min(vlans, slices)
}

// groupNet is the zone's idx-th group network: its slice of the subnet,
// whose first address is the gateway on the nodes and the rest the
// instances' (nothing else lives in it), and its VLAN.
func (z zoneNet) groupNet(idx int) zoneNet {
	base := z.subnet.Addr().As4()
	v := uint32(base[0])<<24 | uint32(base[1])<<16 | uint32(base[2])<<8 | uint32(base[3])
	v += uint32(idx) << (32 - z.netBits)
	p := netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), z.netBits)
	g := z
	g.subnet = p
	g.pool = &addressPool{ranges: [][2]netip.Addr{{p.Addr().Next().Next(), lastAddr(p).Prev()}}}
	g.vlan = z.vlans[0] + idx
	return g
}

// groupNetwork is the network of a security group in a MANAGED zone, given
// the group one at its first launch there: the lowest free index. It runs
// in the launch transaction, under the placement lock; the table's unique
// index catches another controller giving the same index.
func (c *Cloud) groupNetwork(ctx context.Context, tx *store.Tx, z zoneNet, zone, groupID string) (zoneNet, error) {
	var idx int
	err := tx.QueryRow(ctx, `SELECT idx FROM group_networks WHERE zone = ? AND group_id = ?`, zone, groupID).Scan(&idx)
	if err == nil {
		if idx >= z.groupNets() {
			return zoneNet{}, fmt.Errorf("security group %s: network %d is outside zone %s's %d", groupID, idx, zone, z.groupNets())
		}
		return z.groupNet(idx), nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return zoneNet{}, fmt.Errorf("network of security group %s: %w", groupID, err)
	}
	rows, err := tx.Query(ctx, `SELECT idx FROM group_networks WHERE zone = ? ORDER BY idx`, zone)
	if err != nil {
		return zoneNet{}, fmt.Errorf("group networks of zone %s: %w", zone, err)
	}
	idx = 0
	for rows.Next() {
		var i int
		if err := rows.Scan(&i); err != nil {
			rows.Close()
			return zoneNet{}, err
		}
		if i == idx {
			idx++
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return zoneNet{}, err
	}
	if idx >= z.groupNets() {
		return zoneNet{}, ec2.Errorf("InsufficientFreeAddressesInSubnet", "Availability zone %s (networking mode MANAGED) has no network left for another security group: "+
			"its %d are taken (one per group; a deleted group gives its own back). The operator can widen it: "+
			"ironbark cluster set %s --vlans LOW-HIGH --addrs-per-net N (with no instances running).", zone, z.groupNets(), zone)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO group_networks (zone, group_id, idx) VALUES (?, ?, ?)`, zone, groupID, idx); err != nil {
		return zoneNet{}, fmt.Errorf("network of security group %s: %w", groupID, err)
	}
	return z.groupNet(idx), nil
}
