package rack

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
)

// publicCandidates are the documentation networks (RFC 5737) make rack
// tries, in order, for the public network's host side: the first that
// this machine neither routes to nor has an address in. A network the
// machine already reaches through another interface would send the
// rack's traffic out of the machine.
var publicCandidates = []netip.Prefix{
	netip.MustParsePrefix("192.0.2.1/24"),
	netip.MustParsePrefix("198.51.100.1/24"),
	netip.MustParsePrefix("203.0.113.1/24"),
}

// hostNets are the IPv4 networks this machine routes to (its main table,
// default routes aside) or has an address in.
func hostNets() ([]netip.Prefix, error) {
	var nets []netip.Prefix
	routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		return nil, fmt.Errorf("this machine's routes: %w", err)
	}
	for _, r := range routes {
		if r.Dst == nil {
			continue // a default route: everything "overlaps" it
		}
		if p, ok := ipNetPrefix(r.Dst); ok && p.Bits() > 0 {
			nets = append(nets, p)
		}
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, fmt.Errorf("this machine's addresses: %w", err)
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok {
			if p, ok := ipNetPrefix(ipn); ok {
				nets = append(nets, p)
			}
		}
	}
	return nets, nil
}

func ipNetPrefix(n *net.IPNet) (netip.Prefix, bool) {
	ip, ok := netip.AddrFromSlice(n.IP)
	if !ok || !ip.Unmap().Is4() {
		return netip.Prefix{}, false
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(ip.Unmap(), ones).Masked(), true
}

// overlap returns the first of nets that overlaps p.
func overlap(p netip.Prefix, nets []netip.Prefix) (netip.Prefix, bool) {
	for _, n := range nets {
		if n.Overlaps(p.Masked()) {
			return n, true
		}
	}
	return netip.Prefix{}, false
}

// choosePublic is the first candidate that overlaps none of nets.
func choosePublic(nets []netip.Prefix) (netip.Prefix, error) {
	for _, c := range publicCandidates {
		if _, taken := overlap(c, nets); !taken {
			return c, nil
		}
	}
	return netip.Prefix{}, fmt.Errorf("rack: this machine already uses %v: give a free /24 with --public", publicCandidates)
}
