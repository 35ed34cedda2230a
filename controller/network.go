package controller

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strings"

	"ironbark/controller/ec2"
	"ironbark/internal/nodeapi"
)

// ZoneNetwork is a zone's (a cluster's) instance networking as the cluster
// side keeps it.
type ZoneNetwork struct {
	Mode string // nodeapi.ModeSystem, ModeManagedNoVLAN or ModeManaged
	// Subnet is the zone's own instance subnet; "" means Config's
	// ClusterSubnets entry for the zone, else Config.InstanceSubnet.
	Subnet string
	// PublicIPs: launches in the zone get a public address unless they
	// ask for none.
	PublicIPs bool
	// VLANs and AddrsPerNet carve MANAGED mode's group networks
	// (groupnet.go); zero: the defaults.
	VLANs       [2]int
	AddrsPerNet int
}

// ZoneNetworker is what a Placer also implements when zones carry their
// own networking (controller/cluster does); without it every zone is
// MANAGED-NOVLAN on the instance subnet.
type ZoneNetworker interface {
	ZoneNetworks(ctx context.Context) (map[string]ZoneNetwork, error)
}

// zoneNet is a zone's networking, resolved.
type zoneNet struct {
	mode      string
	subnet    netip.Prefix
	pool      *addressPool // private addresses
	publicIPs bool
	// MANAGED: the VLAN range and the group networks' prefix length; a
	// group's network (groupNet) has its own subnet and pool, and vlan.
	vlans   [2]int
	netBits int
	vlan    int
}

// gateway is the subnet's first address: the instance bridge's on each
// node of the zone.
func (z zoneNet) gateway() string { return z.subnet.Addr().Next().String() }

// zoneNets resolves every zone's networking; a zone it does not know
// (no ZoneNetworker, or a cluster removed meanwhile) gets the default.
func (c *Cloud) zoneNets(ctx context.Context) (map[string]zoneNet, error) {
	out := map[string]zoneNet{}
	zn, ok := c.placer.(ZoneNetworker)
	if !ok {
		return out, nil
	}
	nets, err := zn.ZoneNetworks(ctx)
	if err != nil {
		return nil, fmt.Errorf("zone networks: %w", err)
	}
	for zone, n := range nets {
		s := n.Subnet
		if s == "" {
			s = c.cfg.ClusterSubnets[zone]
		}
		z := zoneNet{mode: n.Mode, subnet: c.subnet, pool: c.privatePool, publicIPs: n.PublicIPs}
		if z.mode == "" {
			z.mode = nodeapi.ModeManagedNoVLAN
		}
		if s != "" {
			if z.subnet, z.pool, err = parseInstanceSubnet(s); err != nil {
				return nil, fmt.Errorf("zone %s: %w", zone, err)
			}
		}
		z.vlans = n.VLANs
		if z.vlans == [2]int{} {
			z.vlans = DefaultVLANs
		}
		z.netBits = GroupNetBits(z.subnet, n.AddrsPerNet)
		out[zone] = z
	}
	return out, nil
}

// zoneNetOf is one zone's networking from zoneNets' answer.
func (c *Cloud) zoneNetOf(nets map[string]zoneNet, zone string) zoneNet {
	if z, ok := nets[zone]; ok {
		return z
	}
	return zoneNet{mode: nodeapi.ModeManagedNoVLAN, subnet: c.subnet, pool: c.privatePool}
}

// noPublicInSystem refuses a public address for an instance of a SYSTEM
// zone: its instances route through the cluster network's own router, not
// the node that would NAT the address (Eucalyptus' SYSTEM mode had no
// elastic IPs either).
func noPublicInSystem(z zoneNet, zone string) error {
	if z.mode != nodeapi.ModeSystem {
		return nil
	}
	return ec2.Errorf("UnsupportedOperation", "Instances of availability zone %s (networking mode SYSTEM) take no public address: "+
		"its instances are on the cluster's own network; the administrator can switch it to MANAGED-NOVLAN "+
		"(ironbark cluster set %s --network-mode MANAGED-NOVLAN).", zone, zone)
}

// instanceNetwork is what the node is told of an instance's networking;
// netSubnet and vlan are the instance's group network in MANAGED mode
// ("" and 0 otherwise), as recorded at launch.
func (z zoneNet) instanceNetwork(publicIP, netSubnet string, vlan int) *nodeapi.InstanceNetwork {
	n := &nodeapi.InstanceNetwork{Mode: z.mode, Subnet: z.subnet.String(), Gateway: z.gateway(), PublicIP: publicIP}
	if p, err := netip.ParsePrefix(netSubnet); err == nil && vlan > 0 {
		n.Mode, n.Subnet, n.Gateway, n.VLAN = nodeapi.ModeManaged, p.String(), p.Addr().Next().String(), vlan
	}
	return n
}

// ErrSubnetOverlap is returned when a cluster's instance subnet overlaps
// another cluster's or the cloud's default one.
var ErrSubnetOverlap = errors.New("instance subnets overlap")

// ParseSubnet checks an instance subnet: an IPv4 CIDR of /28 or larger,
// given by its network address.
func ParseSubnet(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(strings.TrimSpace(s))
	if err != nil || !p.Addr().Is4() || p.Bits() > 28 || p.Bits() < 8 {
		return netip.Prefix{}, fmt.Errorf("instance subnet %q: want an IPv4 CIDR from /8 to /28 (e.g. 10.89.0.0/16)", s)
	}
	if p.Masked() != p {
		return netip.Prefix{}, fmt.Errorf("instance subnet %q: the network address is %s", s, p.Masked())
	}
	return p, nil
}

// CheckSubnets refuses overlapping instance subnets; subnets maps an
// owner ("cluster zone-a", "instanceSubnet") to its CIDR.
func CheckSubnets(subnets map[string]string) error {
	owners := make([]string, 0, len(subnets))
	for o := range subnets {
		owners = append(owners, o)
	}
	sort.Strings(owners)
	parsed := map[string]netip.Prefix{}
	for _, o := range owners {
		p, err := ParseSubnet(subnets[o])
		if err != nil {
			return fmt.Errorf("%s: %w", o, err)
		}
		parsed[o] = p
	}
	for i, a := range owners {
		for _, b := range owners[i+1:] {
			if parsed[a].Overlaps(parsed[b]) {
				return fmt.Errorf("%w: %s (%s) and %s (%s): give each cluster its own range (ironbark cluster set NAME --instance-subnet CIDR)",
					ErrSubnetOverlap, a, parsed[a], b, parsed[b])
			}
		}
	}
	return nil
}
