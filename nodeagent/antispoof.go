package nodeagent

import (
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"ironbark/internal/nodeapi"
)

// tapPrefix starts the name of every instance's port on the bridge.
const tapPrefix = "ibi"

// guestFilterPrefix starts the name of each bridge's filter table
// (family bridge): ironbark-BRIDGE.
const guestFilterPrefix = "ironbark-"

// TapName is the name of an instance's port on the bridge (at most 15
// bytes, Linux's limit): "ibi" and the end of the instance ID.
func TapName(instanceID string) string {
	id := strings.TrimPrefix(instanceID, "i-")
	if len(id) > 12 {
		id = id[len(id)-12:]
	}
	return tapPrefix + id
}

// guestFilter pins each instance's bridge port to the instance's MAC and
// address with an nftables bridge-family table: a frame from an instance's
// port must carry its MAC, and its IPv4 or ARP sender address must be the
// instance's (or 0.0.0.0, for DHCP and ARP probes). So the source address
// the metadata service sees is the instance's own, and no guest reads
// another's metadata or user data. The bridge filter works the same under
// qemu and Xen (libvirt's nwfilter has no libxl support), and needs no
// nft or ebtables binary. Frames from other ports (the uplink) pass. The
// rules name each port (the instance's tap, TapName) rather than the
// bridge: `meta ibrname` needs CONFIG_NFT_BRIDGE_META, which not every
// kernel has, and tap names are unique per instance anyway.
//
// Addresses every node of a segment holds alike (shared: the metadata
// address, and the subnet's gateway when the agent put it on the bridge)
// stay on this node: ARP for them or from them never crosses the bridge's
// other ports (the uplink to the cluster's network), so an instance
// always finds its own node's router and metadata service, whichever
// node answers fastest elsewhere (Eucalyptus' EDGE mode did the same with
// ebtables).
//
// An instance's packets to the metadata address are the node's whatever
// their Ethernet destination: a SYSTEM-mode instance's default route is
// the cluster network's router, not this node, so the filter turns such a
// frame to the bridge itself (ether daddr set to the bridge's MAC, packet
// type host), where the agent's metadata service answers it. The node
// answers from its own address on the cluster network.
type guestFilter struct {
	conn    *nftables.Conn
	table   *nftables.Table
	chain   *nftables.Chain
	input   *nftables.Chain // frames a port delivers to the node itself
	forward *nftables.Chain // frames bridged between ports
	output  *nftables.Chain // frames the node itself sends out of a port
	bridge  string
	nl      *netlink.Handle // in the bridge's namespace: its MAC
	last    string          // the instance set, shared addresses and bridge MAC the rules were made for
}

// newGuestFilter makes (replacing a killed agent's) the bridge's table in
// the network namespace nsfd (0: the process's).
func newGuestFilter(bridge string, nsfd int) (*guestFilter, error) {
	var opts []nftables.ConnOption
	if nsfd > 0 {
		opts = append(opts, nftables.WithNetNSFd(nsfd))
	}
	c, err := nftables.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	h := netns.None()
	if nsfd > 0 {
		h = netns.NsHandle(nsfd)
	}
	nl, err := netlink.NewHandleAt(h)
	if err != nil {
		return nil, fmt.Errorf("netlink: %w", err)
	}
	g := &guestFilter{conn: c, bridge: bridge, nl: nl,
		table: &nftables.Table{Family: nftables.TableFamilyBridge, Name: guestFilterPrefix + bridge}}
	c.AddTable(g.table)
	c.DelTable(g.table)
	c.AddTable(g.table)
	g.chain = c.AddChain(&nftables.Chain{Name: "guests", Table: g.table, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityRef(-200)})
	g.input = c.AddChain(&nftables.Chain{Name: "uplink-input", Table: g.table, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityRef(-200)})
	g.forward = c.AddChain(&nftables.Chain{Name: "uplink-forward", Table: g.table, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityRef(-200)})
	g.output = c.AddChain(&nftables.Chain{Name: "uplink-output", Table: g.table, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityRef(-200)})
	if err := c.Flush(); err != nil {
		nl.Close()
		return nil, fmt.Errorf("nftables bridge table for %s: %w", bridge, err)
	}
	return g, nil
}

// bridgeMAC is the bridge's MAC now: a bridge without one set takes its
// lowest port's, so it can change as instances come and go.
func (g *guestFilter) bridgeMAC() (net.HardwareAddr, error) {
	l, err := g.nl.LinkByName(g.bridge)
	if err != nil {
		return nil, fmt.Errorf("bridge %s: %w", g.bridge, err)
	}
	if mac := l.Attrs().HardwareAddr; len(mac) == 6 {
		return mac, nil
	}
	return nil, fmt.Errorf("bridge %s has no Ethernet address", g.bridge)
}

// sync makes the rules match the instances and the shared addresses
// (no-op when they did not change).
func (g *guestFilter) sync(specs []nodeapi.InstanceSpec, shared []netip.Addr) error {
	type guest struct {
		tap string
		mac net.HardwareAddr
		ip  netip.Addr
	}
	var gs []guest
	var keys []string
	for _, s := range specs {
		mac, err := net.ParseMAC(s.MAC)
		ip, ierr := netip.ParseAddr(s.PrivateIP)
		if err != nil || len(mac) != 6 || ierr != nil || !ip.Is4() {
			continue
		}
		gs = append(gs, guest{TapName(s.InstanceID), mac, ip})
		keys = append(keys, TapName(s.InstanceID)+"/"+mac.String()+"/"+ip.String())
	}
	sort.Strings(keys)
	brMAC, err := g.bridgeMAC()
	if err != nil {
		return err
	}
	keys = append(keys, "bridge/"+brMAC.String())
	for _, a := range shared {
		if a.Is4() {
			keys = append(keys, "shared/"+a.String())
		}
	}
	key := strings.Join(keys, ",")
	if key == g.last {
		return nil
	}
	g.conn.FlushChain(g.chain)
	g.conn.FlushChain(g.input)
	g.conn.FlushChain(g.forward)
	g.conn.FlushChain(g.output)
	addTo := func(c *nftables.Chain, e ...[]expr.Any) {
		var all []expr.Any
		for _, x := range e {
			all = append(all, x...)
		}
		g.conn.AddRule(&nftables.Rule{Table: g.table, Chain: c, Exprs: all})
	}
	add := func(e ...[]expr.Any) { addTo(g.chain, e...) }
	// ARP's sender and target protocol addresses (IPv4 over Ethernet).
	const arpSPA, arpTPA = 14, 24
	for _, a := range shared {
		if !a.Is4() {
			continue
		}
		ip := a.AsSlice()
		fromUplink := g.metaPrefix(expr.MetaKeyIIFNAME, expr.CmpOpNeq, tapPrefix)
		toUplink := g.metaPrefix(expr.MetaKeyOIFNAME, expr.CmpOpNeq, tapPrefix)
		fromGuest := g.metaPrefix(expr.MetaKeyIIFNAME, expr.CmpOpEq, tapPrefix)
		toGuest := g.metaPrefix(expr.MetaKeyOIFNAME, expr.CmpOpEq, tapPrefix)
		arp := etherType(unix.ETH_P_ARP)
		for _, off := range []uint32{arpSPA, arpTPA} {
			has := payload(expr.PayloadBaseNetworkHeader, off, expr.CmpOpEq, ip)
			// Another node's instance asking for it, or another node
			// announcing it: not for this node to hear...
			addTo(g.input, fromUplink, arp, has, verdict(expr.VerdictDrop))
			// ... nor for this node's instances.
			addTo(g.forward, fromUplink, toGuest, arp, has, verdict(expr.VerdictDrop))
			// This node's instance asking for it: answered here, not
			// flooded to the other nodes.
			addTo(g.forward, fromGuest, toUplink, arp, has, verdict(expr.VerdictDrop))
		}
		// This node's answers and announcements for it.
		addTo(g.output, toUplink, arp, payload(expr.PayloadBaseNetworkHeader, arpSPA, expr.CmpOpEq, ip), verdict(expr.VerdictDrop))
	}
	for _, x := range gs {
		port := g.metaIs(expr.MetaKeyIIFNAME, ifname(x.tap))
		zero := []byte{0, 0, 0, 0}
		add(port, payload(expr.PayloadBaseLLHeader, 6, expr.CmpOpNeq, x.mac), verdict(expr.VerdictDrop))
		// To the metadata address, through whichever router: this node's.
		add(port, etherType(unix.ETH_P_IP), payload(expr.PayloadBaseNetworkHeader, 12, expr.CmpOpEq, x.ip.AsSlice()),
			payload(expr.PayloadBaseNetworkHeader, 16, expr.CmpOpEq, MetadataAddr.AsSlice()),
			[]expr.Any{&expr.Immediate{Register: 1, Data: brMAC},
				&expr.Payload{OperationType: expr.PayloadWrite, SourceRegister: 1, Base: expr.PayloadBaseLLHeader, Offset: 0, Len: 6},
				&expr.Immediate{Register: 1, Data: []byte{unix.PACKET_HOST}},
				&expr.Meta{Key: expr.MetaKeyPKTTYPE, SourceRegister: true, Register: 1}},
			verdict(expr.VerdictAccept))
		add(port, etherType(unix.ETH_P_IP), payload(expr.PayloadBaseNetworkHeader, 12, expr.CmpOpEq, x.ip.AsSlice()), verdict(expr.VerdictAccept))
		add(port, etherType(unix.ETH_P_IP), payload(expr.PayloadBaseNetworkHeader, 12, expr.CmpOpEq, zero), verdict(expr.VerdictAccept))
		add(port, etherType(unix.ETH_P_ARP), payload(expr.PayloadBaseNetworkHeader, 14, expr.CmpOpEq, x.ip.AsSlice()), verdict(expr.VerdictAccept))
		add(port, etherType(unix.ETH_P_ARP), payload(expr.PayloadBaseNetworkHeader, 14, expr.CmpOpEq, zero), verdict(expr.VerdictAccept))
		add(port, etherType(unix.ETH_P_IPV6), verdict(expr.VerdictAccept))
		// Whatever else comes from the port (another address) is dropped.
		add(port, verdict(expr.VerdictDrop))
	}
	if err := g.conn.Flush(); err != nil {
		return fmt.Errorf("nftables rules for %s: %w", g.bridge, err)
	}
	g.last = key
	return nil
}

// close removes the table.
func (g *guestFilter) close() error {
	g.nl.Close()
	g.conn.DelTable(g.table)
	return g.conn.Flush()
}

// ifname is an interface name as the kernel compares it: 16 bytes, NUL
// padded (a shorter slice compares as a prefix).
func ifname(n string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, n)
	return b
}

// metaPrefix compares the start of an interface name with prefix (nft's
// `iifname != "ibi*"`: a compare of the first bytes only).
func (g *guestFilter) metaPrefix(key expr.MetaKey, op expr.CmpOp, prefix string) []expr.Any {
	return []expr.Any{&expr.Meta{Key: key, Register: 1}, &expr.Cmp{Op: op, Register: 1, Data: []byte(prefix)}}
}

func (g *guestFilter) metaIs(key expr.MetaKey, data []byte) []expr.Any {
	return []expr.Any{&expr.Meta{Key: key, Register: 1}, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: data}}
}

func payload(base expr.PayloadBase, off uint32, op expr.CmpOp, data []byte) []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: base, Offset: off, Len: uint32(len(data))},
		&expr.Cmp{Op: op, Register: 1, Data: data},
	}
}

func etherType(t uint16) []expr.Any {
	return payload(expr.PayloadBaseLLHeader, 12, expr.CmpOpEq, []byte{byte(t >> 8), byte(t)})
}

func verdict(k expr.VerdictKind) []expr.Any { return []expr.Any{&expr.Verdict{Kind: k}} }
