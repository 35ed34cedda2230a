package natmap

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// TableName is the nftables table this package owns (family ip).
const TableName = "ironbark-nat"

// labelSuffix marks the public addresses this package put on the public
// interface (the kernel wants IPv4 labels to start with the interface name).
const labelSuffix = ":ib"

// Mapping is one elastic IP: traffic to Public goes to Private, and
// Private's outbound traffic leaves as Public.
type Mapping struct {
	Public, Private netip.Addr
}

// Config says where the table lives and what the node's public side is.
type Config struct {
	// NetNS is an fd of the network namespace to program (0: the
	// process's own).
	NetNS int
	// PublicInterface is the node's public side: the public addresses go
	// on it as /32s, and outbound NAT leaves through it. "" when the
	// public pool is routed to the node by the network instead (then no
	// address is added, and there is no outbound NAT).
	PublicInterface string
	// OutboundNAT masquerades the outbound traffic of instances without a
	// public address through PublicInterface (off unless the operator
	// turns it on).
	OutboundNAT bool
	// Bridge is the node's instance bridge: the instances' answers to
	// the outside, and their outbound traffic, are routed from it ("" to
	// leave its forwarding as it is).
	Bridge string
	Logger *slog.Logger
}

// Table is the node's ironbark-nat table.
type Table struct {
	cfg     Config
	conn    *nftables.Conn
	nl      *netlink.Handle
	bridges []string // more instance bridges (SetBridges)
	last    string   // the state the table was last built for
}

// SetBridges names the node's instance bridges besides Config.Bridge
// (MANAGED mode's bridge per VLAN): the next Apply turns on forwarding
// for them too, as for Config.Bridge.
func (t *Table) SetBridges(names []string) {
	t.bridges = slices.Clone(names)
	slices.Sort(t.bridges)
}

// New opens the namespace's nftables and netlink. It changes nothing: a
// table a previous agent left keeps working until the first Apply
// replaces it.
func New(cfg Config) (*Table, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.OutboundNAT && cfg.PublicInterface == "" {
		return nil, errors.New("natmap: outbound NAT needs the public interface")
	}
	if n := cfg.PublicInterface; n != "" && len(n)+len(labelSuffix) >= unix.IFNAMSIZ {
		return nil, fmt.Errorf("natmap: public interface name %q is too long to label its addresses (at most %d characters)", n, unix.IFNAMSIZ-1-len(labelSuffix))
	}
	var opts []nftables.ConnOption
	if cfg.NetNS > 0 {
		opts = append(opts, nftables.WithNetNSFd(cfg.NetNS))
	}
	conn, err := nftables.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("natmap: nftables: %w", err)
	}
	t := &Table{cfg: cfg, conn: conn}
	if cfg.PublicInterface != "" {
		h := netns.None()
		if cfg.NetNS > 0 {
			h = netns.NsHandle(cfg.NetNS)
		}
		if t.nl, err = netlink.NewHandleAt(h); err != nil {
			return nil, fmt.Errorf("natmap: netlink: %w", err)
		}
	}
	return t, nil
}

// Exists reports whether the namespace nsfd (0: the process's) has the
// table: a node whose last elastic IP went while its agent was down must
// rebuild it even with nothing to map.
func Exists(nsfd int) (bool, error) {
	var opts []nftables.ConnOption
	if nsfd > 0 {
		opts = append(opts, nftables.WithNetNSFd(nsfd))
	}
	conn, err := nftables.New(opts...)
	if err != nil {
		return false, fmt.Errorf("natmap: nftables: %w", err)
	}
	tables, err := conn.ListTablesOfFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return false, fmt.Errorf("natmap: list tables: %w", err)
	}
	return slices.ContainsFunc(tables, func(t *nftables.Table) bool { return t.Name == TableName }), nil
}

// Close releases the netlink handles; the rules and addresses stay.
func (t *Table) Close() {
	if t.nl != nil {
		t.nl.Close()
	}
	_ = t.conn.CloseLasting()
}

// check refuses mappings that cannot all hold: a public address twice, an
// instance with two, or not IPv4.
func check(ms []Mapping) error {
	pub, priv := map[netip.Addr]bool{}, map[netip.Addr]bool{}
	for _, m := range ms {
		if !m.Public.Is4() || !m.Private.Is4() {
			return fmt.Errorf("natmap: %s -> %s: IPv4 addresses expected", m.Public, m.Private)
		}
		if pub[m.Public] {
			return fmt.Errorf("natmap: public address %s mapped twice", m.Public)
		}
		if priv[m.Private] {
			return fmt.Errorf("natmap: instance address %s has two public addresses", m.Private)
		}
		pub[m.Public], priv[m.Private] = true, true
	}
	return nil
}

// Apply makes the table hold exactly these mappings (and, with outbound
// NAT, masquerade the subnets), in one transaction, then the public
// interface exactly their public addresses. Bad mappings change nothing.
func (t *Table) Apply(ms []Mapping, subnets []netip.Prefix) error {
	if err := check(ms); err != nil {
		return err
	}
	ms = slices.Clone(ms)
	slices.SortFunc(ms, func(a, b Mapping) int { return a.Public.Compare(b.Public) })
	subnets = slices.Clone(subnets)
	slices.SortFunc(subnets, func(a, b netip.Prefix) int { return strings.Compare(a.String(), b.String()) })
	subnets = slices.Compact(subnets)
	var key strings.Builder
	for _, m := range ms {
		fmt.Fprintf(&key, "%s>%s,", m.Public, m.Private)
	}
	for _, s := range subnets {
		fmt.Fprintf(&key, "%s,", s)
	}
	for _, b := range t.bridges {
		fmt.Fprintf(&key, "%s,", b)
	}
	if key.String() == t.last {
		return nil
	}
	t.build(ms, subnets)
	if err := t.conn.Flush(); err != nil {
		return fmt.Errorf("natmap: apply %d elastic IPs: %w", len(ms), err)
	}
	if len(ms) > 0 || t.cfg.OutboundNAT {
		if err := t.forward(); err != nil {
			return err // t.last is unchanged: the next Apply tries again
		}
	}
	t.last = key.String()
	if err := t.syncAddrs(ms); err != nil {
		t.last = "" // try the addresses again next time
		return err
	}
	return nil
}

// build queues the whole table: created if missing, deleted, created again
// with its chains and rules, all in the batch Flush sends.
func (t *Table) build(ms []Mapping, subnets []netip.Prefix) {
	c := t.conn
	tbl := &nftables.Table{Family: nftables.TableFamilyIPv4, Name: TableName}
	c.AddTable(tbl)
	c.DelTable(tbl)
	c.AddTable(tbl)
	chain := func(name string, hook *nftables.ChainHook, prio *nftables.ChainPriority) *nftables.Chain {
		return c.AddChain(&nftables.Chain{Name: name, Table: tbl, Type: nftables.ChainTypeNAT, Hooknum: hook, Priority: prio})
	}
	pre := chain("prerouting", nftables.ChainHookPrerouting, nftables.ChainPriorityNATDest)
	out := chain("output", nftables.ChainHookOutput, nftables.ChainPriorityNATDest)
	post := chain("postrouting", nftables.ChainHookPostrouting, nftables.ChainPriorityNATSource)
	rule := func(ch *nftables.Chain, e ...[]expr.Any) {
		var all []expr.Any
		for _, x := range e {
			all = append(all, x...)
		}
		c.AddRule(&nftables.Rule{Table: tbl, Chain: ch, Exprs: all})
	}
	for _, m := range ms {
		// ip daddr PUBLIC dnat to PRIVATE (from outside, and from the
		// node itself).
		rule(pre, addrIs(16, m.Public), natTo(expr.NATTypeDestNAT, m.Private))
		rule(out, addrIs(16, m.Public), natTo(expr.NATTypeDestNAT, m.Private))
	}
	for _, s := range subnets {
		// An instance that reaches another of this node through its
		// public address: the answer must come back through the node, so
		// the node stands in for the source (hairpin NAT).
		rule(post, ctDNAT(), inPrefix(12, s), inPrefix(16, s), []expr.Any{&expr.Masq{}})
	}
	for _, m := range ms {
		// ip saddr PRIVATE snat to PUBLIC (routed traffic only: the
		// instance's own subnet is bridged, never routed).
		rule(post, addrIs(12, m.Private), natTo(expr.NATTypeSourceNAT, m.Public))
	}
	if t.cfg.OutboundNAT {
		for _, s := range subnets {
			// ip saddr SUBNET oifname PUBLIC masquerade
			rule(post, inPrefix(12, s), []expr.Any{
				&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname(t.cfg.PublicInterface)},
				&expr.Masq{},
			})
		}
	}
}

// addrIs matches the IPv4 header's address at off (12 source, 16
// destination).
func addrIs(off uint32, a netip.Addr) []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: 4},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: a.AsSlice()},
	}
}

// inPrefix matches the address at off inside p.
func inPrefix(off uint32, p netip.Prefix) []expr.Any {
	mask := net.CIDRMask(p.Bits(), 32)
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: 4},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask, Xor: []byte{0, 0, 0, 0}},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: p.Masked().Addr().AsSlice()},
	}
}

// ctDNAT matches connections whose destination was translated.
func ctDNAT() []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATUS},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binary.NativeEndian.AppendUint32(nil, ipsDstNAT), Xor: []byte{0, 0, 0, 0}},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{0, 0, 0, 0}},
	}
}

// ipsDstNAT is conntrack's IPS_DST_NAT status bit.
const ipsDstNAT = 1 << 5

func natTo(typ expr.NATType, a netip.Addr) []expr.Any {
	return []expr.Any{
		&expr.Immediate{Register: 1, Data: a.AsSlice()},
		&expr.NAT{Type: typ, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegAddrMax: 1},
	}
}

// ifname is an interface name as the kernel compares it: 16 bytes, NUL
// padded.
func ifname(n string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, n)
	return b
}
