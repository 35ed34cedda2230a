package nodeagent

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"slices"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"ironbark/internal/nodeapi"
	"ironbark/nodeagent/natmap"
)

// netState is the agent's part of instance networking beyond the bridge:
// the subnets' gateway addresses on it (MANAGED modes) and the elastic
// IPs' NAT table.
type netState struct {
	nat      *natmap.Table
	gateways map[netip.Prefix]bool // put on the bridge already
	nsfd     int                   // Config.NetNS opened (0: the agent's own)
	nl       *netlink.Handle
	checked  bool // whether a previous agent's table was looked for
}

// open gets the namespace's netlink handle (and fd) on first use.
func (n *netState) open(path string) error {
	if n.nl != nil {
		return nil
	}
	h := netns.None()
	if path != "" {
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("network namespace %s: %w", path, err)
		}
		n.nsfd, h = fd, netns.NsHandle(fd)
	}
	nl, err := netlink.NewHandleAt(h)
	if err != nil {
		return fmt.Errorf("netlink: %w", err)
	}
	n.nl = nl
	return nil
}

// close releases the handles; rules and addresses stay.
func (n *netState) close() {
	if n.nat != nil {
		n.nat.Close()
	}
	if n.nl != nil {
		n.nl.Close()
	}
	if n.nsfd > 0 {
		unix.Close(n.nsfd)
	}
}

// instanceNetworks is what the desired instances ask of the node: the
// elastic IP mappings, the MANAGED subnets (NAT), and those of them whose
// gateway goes on the cluster bridge (all but MANAGED mode's VLANs, whose
// gateways are on their own bridges).
func instanceNetworks(specs []nodeapi.InstanceSpec) (ms []natmap.Mapping, subnets, onBridge []netip.Prefix) {
	seen := map[netip.Prefix]bool{}
	for _, s := range specs {
		n := s.Network
		if n == nil || s.Desired == nodeapi.StateTerminated {
			continue
		}
		if p, err := netip.ParsePrefix(n.Subnet); err == nil && n.Mode != nodeapi.ModeSystem && !seen[p] {
			seen[p] = true
			subnets = append(subnets, p)
			if _, vlan, _ := vlanOf(s); !vlan {
				onBridge = append(onBridge, p)
			}
		}
		pub, err1 := netip.ParseAddr(n.PublicIP)
		priv, err2 := netip.ParseAddr(s.PrivateIP)
		if err1 == nil && err2 == nil && n.Mode != nodeapi.ModeSystem {
			ms = append(ms, natmap.Mapping{Public: pub, Private: priv})
		}
	}
	return ms, subnets, onBridge
}

// syncNetwork brings the node's NAT and bridge gateways in line with the
// desired instances. Until the first desired list arrives it does
// nothing, so a restarted agent leaves its predecessor's rules working
// until it rebuilds the same ones.
func (a *Agent) syncNetwork() {
	a.mu.Lock()
	if !a.haveDesired {
		a.mu.Unlock()
		return
	}
	ms, subnets, onBridge := instanceNetworks(a.desired)
	a.mu.Unlock()
	a.syncVLANs()
	if a.net.gateways == nil {
		a.net.gateways = map[netip.Prefix]bool{}
	}
	if err := a.net.open(a.cfg.NetNS); err != nil {
		a.log.Error("instance networking", "err", err)
		return
	}
	if a.cfg.Bridge != "" {
		for _, p := range onBridge {
			if a.net.gateways[p] {
				continue
			}
			if err := ensureGateway(a.net.nl, a.cfg.Bridge, p); err != nil {
				a.log.Error("instance subnet gateway on the bridge", "bridge", a.cfg.Bridge, "subnet", p, "err", err)
				continue
			}
			a.net.gateways[p] = true
		}
	}
	if a.net.nat == nil {
		if len(ms) == 0 && !a.cfg.OutboundNAT {
			// No elastic IP: no table to own, unless a previous agent
			// left one whose addresses went meanwhile.
			if a.net.checked {
				return
			}
			left, err := natmap.Exists(a.net.nsfd)
			a.net.checked = err == nil
			if err != nil || !left {
				return
			}
		}
		t, err := natmap.New(natmap.Config{NetNS: a.net.nsfd, PublicInterface: a.cfg.PublicInterface, OutboundNAT: a.cfg.OutboundNAT,
			Bridge: a.cfg.Bridge, Logger: a.log})
		if err != nil {
			a.log.Error("elastic IPs", "err", err)
			return
		}
		a.net.nat = t
	}
	a.net.nat.SetBridges(a.vlanBridges())
	if err := a.net.nat.Apply(ms, subnets); err != nil {
		a.log.Error("elastic IPs", "err", err)
	}
}

// ensureGateway gives the bridge the subnet's first address (the
// instances' router, DHCP server and NAT side) unless it has an address
// in the subnet already.
func ensureGateway(nl *netlink.Handle, bridge string, p netip.Prefix) error {
	link, err := nl.LinkByName(bridge)
	if err != nil {
		return fmt.Errorf("bridge %s: %w", bridge, err)
	}
	addrs, err := nl.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("bridge %s addresses: %w", bridge, err)
	}
	for _, ad := range addrs {
		if ip, ok := netip.AddrFromSlice(ad.IP.To4()); ok && p.Contains(ip) {
			return nil
		}
	}
	gw := p.Addr().Next()
	a := &netlink.Addr{IPNet: &net.IPNet{IP: gw.AsSlice(), Mask: net.CIDRMask(p.Bits(), 32)}}
	if err := nl.AddrAdd(link, a); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("add %s/%d to %s: %w", gw, p.Bits(), bridge, err)
	}
	return nil
}

// dhcpHost is the bridge address the agent answers an instance's DHCP
// from: its subnet's gateway when the controller names one (unless the
// bridge has its own address in that subnet), else the bridge's own
// address; false for a SYSTEM-mode instance, whose address
// comes from the cluster network's own DHCP server.
func dhcpHost(req string, specs []nodeapi.InstanceSpec, bridge netip.Prefix) (netip.Prefix, bool) {
	for _, s := range specs {
		if s.Network == nil || !equalFoldMAC(s.MAC, req) {
			continue
		}
		if s.Network.Mode == nodeapi.ModeSystem {
			return netip.Prefix{}, false
		}
		p, err1 := netip.ParsePrefix(s.Network.Subnet)
		gw, err2 := netip.ParseAddr(s.Network.Gateway)
		if err1 == nil && err2 == nil {
			// A bridge that has its own address in the subnet kept it
			// (ensureGateway adds none then): the instances' router and
			// metadata are that address, not a gateway nobody answers for
			// here (a Xen dom0 bridged onto the lab's network: the subnet's
			// first address is the lab host's).
			if bridge.IsValid() && p.Contains(bridge.Addr()) {
				return netip.PrefixFrom(bridge.Addr(), p.Bits()), true
			}
			return netip.PrefixFrom(gw, p.Bits()), true
		}
	}
	return bridge, true
}

// sharedAddrs are the addresses on the bridge that every node of a
// cluster holds alike: the metadata address, and the gateway of each
// MANAGED subnet the bridge has no address of its own in (ensureGateway
// put the gateway there; a bridge with its own address in the subnet is
// its instances' router under that unique address).
func sharedAddrs(specs []nodeapi.InstanceSpec, bridge netip.Prefix) []netip.Addr {
	out := []netip.Addr{MetadataAddr}
	for _, s := range specs {
		n := s.Network
		if n == nil || n.Mode == nodeapi.ModeSystem {
			continue
		}
		p, err1 := netip.ParsePrefix(n.Subnet)
		gw, err2 := netip.ParseAddr(n.Gateway)
		if err1 != nil || err2 != nil || (bridge.IsValid() && p.Contains(bridge.Addr())) || slices.Contains(out, gw) {
			continue
		}
		out = append(out, gw)
	}
	return out
}

func equalFoldMAC(a, b string) bool {
	x, err1 := net.ParseMAC(a)
	y, err2 := net.ParseMAC(b)
	return err1 == nil && err2 == nil && x.String() == y.String()
}

// inNetNS runs fn on an OS thread in Config.NetNS (or, without one, as
// it is): the instance services' sockets, the metadata address and the
// bridge filter belong to the namespace of the thread that makes them.
func (a *Agent) inNetNS(fn func()) {
	if a.cfg.NetNS == "" {
		fn()
		return
	}
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		a.log.Error("instance services: network namespace", "err", err)
		return
	}
	defer orig.Close()
	h, err := netns.GetFromPath(a.cfg.NetNS)
	if err == nil {
		err = netns.Set(h)
		h.Close()
	}
	if err != nil {
		runtime.UnlockOSThread()
		a.log.Error("instance services: enter network namespace", "netns", a.cfg.NetNS, "err", err)
		return
	}
	fn()
	if netns.Set(orig) == nil {
		runtime.UnlockOSThread()
	} // else the thread stays locked and ends with its goroutine
}
