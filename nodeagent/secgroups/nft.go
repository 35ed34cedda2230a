package secgroups

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"sync"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// TablePrefix starts the name of the nftables table (family inet) the
// firewall owns: ironbark-sg-BRIDGE. One per instance bridge, so agents on
// two bridges of one host (tests, make run) never touch each other's.
const TablePrefix = "ironbark-sg-"

// TableName is the table of the instances on bridge.
func TableName(bridge string) string { return TablePrefix + bridge }

// Names of the verdict maps and base chains.
const (
	inPorts  = "in_ports"  // destination address -> jump in_<instance>
	outPorts = "out_ports" // source address -> jump out_<instance>
)

// base is one base chain: a hook and the map it looks instances up in.
type base struct {
	name     string
	hookName string // in nft's syntax
	hook     *nftables.ChainHook
	prio     int32
	byDst    bool // look up the destination (ingress) or the source (egress)
	dhcpOffr bool // let the node's DHCP answers out first (node -> instance)
}

// bases: instance to instance and outside to instance cross forward
// (egress first, then ingress: accepting in one base chain does not skip
// the other); instance to node is input, node to instance output.
var bases = []base{
	{name: "sg_fwd_out", hookName: "forward", hook: nftables.ChainHookForward, prio: -1},
	{name: "sg_fwd_in", hookName: "forward", hook: nftables.ChainHookForward, byDst: true},
	{name: "sg_local_out", hookName: "input", hook: nftables.ChainHookInput},
	{name: "sg_local_in", hookName: "output", hook: nftables.ChainHookOutput, byDst: true, dhcpOffr: true},
}

// Firewall programs the table in one network namespace. Apply is safe for
// concurrent use.
type Firewall struct {
	mu     sync.Mutex
	bridge string
	conn   *nftables.Conn
	nsfd   int
	table  *nftables.Table
	last   *Ruleset // what the table holds; nil until the first Apply
	shape  string   // last.structure()
	sets   map[string]*nftables.Set
	chain  map[string]*nftables.Chain
	// rebuilds counts whole-table replacements (the tests tell them from
	// incremental changes).
	rebuilds int
}

// New readies the firewall of the network namespace nsfd (0: the calling
// thread's; the agent's Config.NetNS when its bridge lives in another).
// It changes no rule (a killed agent's table stays until the first Apply
// replaces it) but makes sure bridged IPv4 goes through the inet hooks
// (br_netfilter, bridge-nf-call-iptables) in that namespace, without
// which instances on one bridge would reach each other unfiltered.
func New(bridge string, nsfd int) (*Firewall, error) {
	if bridge == "" || len(bridge) >= unix.IFNAMSIZ {
		return nil, fmt.Errorf("security groups: bridge name %q", bridge)
	}
	// Every Flush dials netlink anew, from whatever thread runs it: the
	// namespace is pinned here, by a descriptor of our own.
	var own int
	err := inNetNS(nsfd, func() error {
		if err := bridgeNetfilter(); err != nil {
			return err
		}
		var err error
		own, err = unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("network namespace: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	c, err := nftables.New(nftables.WithNetNSFd(own), nftables.WithSockOptions(bigBuffers))
	if err != nil {
		unix.Close(own)
		return nil, fmt.Errorf("nftables: %w", err)
	}
	return &Firewall{bridge: bridge, conn: c, nsfd: own, table: &nftables.Table{Family: nftables.TableFamilyINet, Name: TableName(bridge)}}, nil
}

// inNetNS runs fn in the namespace nsfd (0: right here). /proc/sys/net
// and /proc/thread-self/ns/net are the opening thread's namespace's, so
// fn runs on a locked thread moved there, which is dropped afterwards
// rather than moved back.
func inNetNS(nsfd int, fn func() error) error {
	if nsfd <= 0 {
		return fn()
	}
	errc := make(chan error, 1)
	go func() {
		// No UnlockOSThread: the goroutine ends locked, so its thread,
		// still in nsfd's namespace, exits with it.
		runtime.LockOSThread()
		if err := unix.Setns(nsfd, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("enter network namespace: %w", err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// Release lets go of the namespace; the table stays as it is (instances
// keep their filtering while the agent is down).
func (f *Firewall) Release() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.nsfd > 0 {
		unix.Close(f.nsfd)
		f.nsfd = -1
	}
}

// bigBuffers lets one transaction carry a whole node's table: a batch is
// one sendmsg (a message per rule) and the kernel acknowledges each
// message, which the default socket buffers (wmem_max, rmem_max) do not
// hold for a thousand rules. The FORCE options (root) pass those limits,
// as nft does for its batches; the kernel charges what is used, not the
// limit.
func bigBuffers(c *netlink.Conn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		for _, o := range []int{unix.SO_SNDBUFFORCE, unix.SO_RCVBUFFORCE} {
			if e := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, o, 64<<20); e != nil {
				serr = e
			}
		}
	}); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("netlink socket buffers: %w", serr)
	}
	return nil
}

// bridgeNetfilter turns on the filtering of bridged IPv4 by the inet hooks
// (per namespace; the kernel's default is on, an operator may have turned
// it off). br_netfilter may be a module not yet loaded.
func bridgeNetfilter() error {
	const knob = "/proc/sys/net/bridge/bridge-nf-call-iptables"
	if _, err := os.Stat(knob); errors.Is(err, os.ErrNotExist) {
		if out, err := exec.Command("modprobe", "br_netfilter").CombinedOutput(); err != nil {
			return fmt.Errorf("security groups need br_netfilter (bridged instance traffic through nftables): modprobe: %v: %s", err, out)
		}
	}
	if err := os.WriteFile(knob, []byte("1\n"), 0o644); err != nil {
		return fmt.Errorf("security groups: turn on %s: %w", knob, err)
	}
	return nil
}

// Apply makes the table hold exactly rs, in one transaction. It reports
// whether anything changed.
func (f *Firewall) Apply(rs *Ruleset) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	shape := rs.structure()
	if f.last == nil || shape != f.shape {
		if err := f.rebuild(rs); err != nil {
			f.last = nil
			return false, err
		}
		f.last, f.shape = rs, shape
		f.rebuilds++
		return true, nil
	}
	changed := false
	for _, n := range sortedKeys(rs.Chains) {
		if slices.Equal(rs.Chains[n], f.last.Chains[n]) {
			continue
		}
		changed = true
		ch := f.chain[n]
		f.conn.FlushChain(ch)
		for _, r := range rs.Chains[n] {
			f.conn.AddRule(&nftables.Rule{Table: f.table, Chain: ch, Exprs: f.exprs(r)})
		}
	}
	for _, n := range sortedKeys(rs.Sets) {
		add, del := diffAddrs(f.last.Sets[n], rs.Sets[n])
		if len(add)+len(del) == 0 {
			continue
		}
		changed = true
		if len(del) > 0 {
			if err := f.conn.SetDeleteElements(f.sets[n], elems(del)); err != nil {
				return false, f.fail(err)
			}
		}
		if len(add) > 0 {
			if err := f.conn.SetAddElements(f.sets[n], elems(add)); err != nil {
				return false, f.fail(err)
			}
		}
	}
	if !changed {
		return false, nil
	}
	if err := f.conn.Flush(); err != nil {
		return false, f.fail(err)
	}
	f.last = rs
	return true, nil
}

// fail forgets what the table holds, so the next Apply rebuilds it.
func (f *Firewall) fail(err error) error {
	f.last = nil
	return fmt.Errorf("nftables table %s: %w", f.table.Name, err)
}

// Close removes the table (instances lose their filtering: call it only
// when the node stops enforcing groups, not when the agent stops).
func (f *Firewall) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.conn.AddTable(f.table)
	f.conn.DelTable(f.table)
	f.last = nil
	err := f.conn.Flush()
	if f.nsfd > 0 {
		unix.Close(f.nsfd)
		f.nsfd = -1
	}
	return err
}

// rebuild replaces the table with rs: delete and re-add in one batch.
func (f *Firewall) rebuild(rs *Ruleset) error {
	c, t := f.conn, f.table
	c.AddTable(t)
	c.DelTable(t)
	c.AddTable(t)
	f.sets, f.chain = map[string]*nftables.Set{}, map[string]*nftables.Chain{}
	for _, n := range sortedKeys(rs.Sets) {
		s := &nftables.Set{Table: t, Name: n, KeyType: nftables.TypeIPAddr}
		if err := c.AddSet(s, elems(rs.Sets[n])); err != nil {
			return f.fail(err)
		}
		f.sets[n] = s
	}
	names := sortedKeys(rs.Chains)
	for _, n := range names {
		f.chain[n] = c.AddChain(&nftables.Chain{Name: n, Table: t})
	}
	for _, n := range names {
		for _, r := range rs.Chains[n] {
			c.AddRule(&nftables.Rule{Table: t, Chain: f.chain[n], Exprs: f.exprs(r)})
		}
	}
	for _, m := range []struct {
		name string
		of   map[netip.Addr]string
	}{{inPorts, rs.In}, {outPorts, rs.Out}} {
		s := &nftables.Set{Table: t, Name: m.name, IsMap: true, KeyType: nftables.TypeIPAddr, DataType: nftables.TypeVerdict}
		var es []nftables.SetElement
		for _, a := range sortedAddrs(m.of) {
			es = append(es, nftables.SetElement{Key: a.AsSlice(), VerdictData: &expr.Verdict{Kind: expr.VerdictJump, Chain: m.of[a]}})
		}
		if err := c.AddSet(s, es); err != nil {
			return f.fail(err)
		}
		f.sets[m.name] = s
	}
	for _, b := range bases {
		ch := c.AddChain(&nftables.Chain{Name: b.name, Table: t, Type: nftables.ChainTypeFilter,
			Hooknum: b.hook, Priority: nftables.ChainPriorityRef(nftables.ChainPriority(b.prio))})
		for _, br := range rs.bridges(f.bridge) {
			// Only the agent's bridges: bridged traffic has one as both
			// devices, routed traffic to or from an instance as one.
			dev := ifname(expr.MetaKeyIIFNAME, br)
			if b.byDst {
				dev = ifname(expr.MetaKeyOIFNAME, br)
			}
			if b.dhcpOffr {
				c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: cat(dev, l4(17), port(0, 67), port(2, 68), verdict(expr.VerdictAccept))})
			}
			m, off := f.sets[outPorts], uint32(12)
			if b.byDst {
				m, off = f.sets[inPorts], 16
			}
			c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: cat(dev, ipv4(),
				[]expr.Any{&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: 4},
					&expr.Lookup{SourceRegister: 1, SetName: m.Name, SetID: m.ID, IsDestRegSet: true, DestRegister: 0}})})
		}
	}
	if err := c.Flush(); err != nil {
		return f.fail(err)
	}
	return nil
}

// exprs is a rule's nftables expressions, as nft itself would make them
// (so `nft list ruleset` prints them in its own syntax).
func (f *Firewall) exprs(r rule) []expr.Any {
	var e []expr.Any
	if r.est {
		e = append(e, &expr.Ct{Register: 1, Key: expr.CtKeySTATE},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
				Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED),
				Xor:  binaryutil.NativeEndian.PutUint32(0)},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(0)})
	}
	off := uint32(12)
	if r.dst {
		off = 16
	}
	switch {
	case r.peerSet != "":
		s := f.sets[r.peerSet]
		e = append(e, ipv4()...)
		e = append(e, &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: 4},
			&expr.Lookup{SourceRegister: 1, SetName: s.Name, SetID: s.ID})
	case r.peer.IsValid():
		e = append(e, ipv4()...)
		e = append(e, &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: 4})
		if r.peer.Bits() < 32 {
			mask := netipMask(r.peer.Bits())
			e = append(e, &expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask, Xor: []byte{0, 0, 0, 0}})
		}
		e = append(e, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: r.peer.Addr().AsSlice()})
	}
	if r.proto >= 0 {
		e = append(e, l4(byte(r.proto))...)
	}
	if r.from >= 0 {
		e = append(e, &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2})
		if r.from == r.to {
			e = append(e, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(uint16(r.from))})
		} else {
			e = append(e, &expr.Range{Op: expr.CmpOpEq, Register: 1,
				FromData: binaryutil.BigEndian.PutUint16(uint16(r.from)), ToData: binaryutil.BigEndian.PutUint16(uint16(r.to))})
		}
	}
	if r.itype >= 0 {
		e = append(e, &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{byte(r.itype)}})
	}
	if r.icode >= 0 {
		e = append(e, &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 1, Len: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{byte(r.icode)}})
	}
	switch r.verdict {
	case accept:
		e = append(e, verdict(expr.VerdictAccept)...)
	case drop:
		e = append(e, verdict(expr.VerdictDrop)...)
	case jump:
		e = append(e, &expr.Verdict{Kind: expr.VerdictJump, Chain: r.target})
	}
	return e
}

func netipMask(bits int) []byte {
	m := uint32(0xffffffff) << (32 - bits)
	if bits == 0 {
		m = 0
	}
	return binaryutil.BigEndian.PutUint32(m)
}

// ifname matches an interface name (16 bytes, NUL padded).
func ifname(key expr.MetaKey, name string) []expr.Any {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, name)
	return []expr.Any{&expr.Meta{Key: key, Register: 1}, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: b}}
}

func ipv4() []expr.Any {
	return []expr.Any{&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.NFPROTO_IPV4}}}
}

func l4(p byte) []expr.Any {
	return []expr.Any{&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1}, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{p}}}
}

// port matches the transport header's 16 bits at off (0 source, 2
// destination port).
func port(off uint32, p uint16) []expr.Any {
	return []expr.Any{&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: off, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(p)}}
}

func verdict(k expr.VerdictKind) []expr.Any { return []expr.Any{&expr.Verdict{Kind: k}} }

func cat(parts ...[]expr.Any) []expr.Any {
	var out []expr.Any
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func elems(as []netip.Addr) []nftables.SetElement {
	out := make([]nftables.SetElement, len(as))
	for i, a := range as {
		out[i] = nftables.SetElement{Key: a.AsSlice()}
	}
	return out
}

// diffAddrs is what to add to and delete from old to make new (both
// sorted).
func diffAddrs(old, new []netip.Addr) (add, del []netip.Addr) {
	in := func(s []netip.Addr, a netip.Addr) bool {
		_, ok := slices.BinarySearchFunc(s, a, func(x, y netip.Addr) int { return x.Compare(y) })
		return ok
	}
	for _, a := range new {
		if !in(old, a) {
			add = append(add, a)
		}
	}
	for _, a := range old {
		if !in(new, a) {
			del = append(del, a)
		}
	}
	return add, del
}
