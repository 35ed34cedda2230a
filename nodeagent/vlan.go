package nodeagent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"ironbark/internal/nodeapi"
)

// MANAGED mode: a VLAN per security group on the node's private network,
// as Eucalyptus did. An instance whose network says VLAN n (1-4094) gets
// its port on the node's bridge of that VLAN, ibvbrN, whose uplink is the
// VLAN device ibvlanN (tag n) on the agent's cluster bridge
// (Config.Bridge, which carries the node's private interface): tagged
// frames the cluster bridge receives go up to the VLAN device, and the
// VLAN bridge's frames leave tagged. The group's gateway (the subnet's
// first address, the same on every node of the VLAN), the metadata
// address, the agent's DHCP and metadata service and its bridge filter
// are on the VLAN bridge as on the cluster bridge in MANAGED-NOVLAN. The
// node does not route between two VLAN bridges except for elastic IPs'
// DNAT: groups reach each other through public addresses only.

// Names of the VLAN bridge and the VLAN device (at most 10 characters).
const (
	vlanBridgePrefix = "ibvbr"
	vlanDevPrefix    = "ibvlan"
)

// VLANBridge is the name of the node's bridge of VLAN id.
func VLANBridge(id int) string { return vlanBridgePrefix + strconv.Itoa(id) }

// vlanDev is the name of VLAN id's device on the cluster bridge.
func vlanDev(id int) string { return vlanDevPrefix + strconv.Itoa(id) }

// vlanFromName is the VLAN of a name made by VLANBridge or vlanDev with
// prefix, or false.
func vlanFromName(prefix, name string) (int, bool) {
	s, ok := strings.CutPrefix(name, prefix)
	if !ok || s == "" || s[0] == '0' {
		return 0, false
	}
	id, err := strconv.Atoi(s)
	if err != nil || id < 1 || id > 4094 {
		return 0, false
	}
	return id, true
}

// vlanNet is one VLAN an instance needs on the node: the tag, and its
// group's subnet and gateway.
type vlanNet struct {
	ID      int
	Subnet  netip.Prefix
	Gateway netip.Addr
}

// vlanOf is the VLAN an instance's spec asks for: ok false for an
// instance without one (MANAGED-NOVLAN, SYSTEM, VLAN 0: on the cluster
// bridge as ever), an error for a VLAN the agent cannot make.
func vlanOf(s nodeapi.InstanceSpec) (v vlanNet, ok bool, err error) {
	n := s.Network
	if n == nil || n.Mode != nodeapi.ModeManaged || n.VLAN == 0 {
		return vlanNet{}, false, nil
	}
	if n.VLAN < 1 || n.VLAN > 4094 {
		return vlanNet{}, true, fmt.Errorf("instance %s: VLAN %d: want 1 to 4094", s.InstanceID, n.VLAN)
	}
	p, err := netip.ParsePrefix(n.Subnet)
	if err != nil || !p.Addr().Is4() || p.Bits() > 30 {
		return vlanNet{}, true, fmt.Errorf("instance %s: VLAN %d: subnet %q is not an IPv4 CIDR of /30 or larger", s.InstanceID, n.VLAN, n.Subnet)
	}
	p = p.Masked()
	gw, err := netip.ParseAddr(n.Gateway)
	if err != nil || !p.Contains(gw) {
		return vlanNet{}, true, fmt.Errorf("instance %s: VLAN %d: gateway %q is not in its subnet %s", s.InstanceID, n.VLAN, n.Gateway, p)
	}
	return vlanNet{ID: n.VLAN, Subnet: p, Gateway: gw}, true, nil
}

// vlanID is the instance's VLAN, 0 for none (or one it cannot have).
func vlanID(s nodeapi.InstanceSpec) int {
	v, ok, err := vlanOf(s)
	if !ok || err != nil {
		return 0
	}
	return v.ID
}

// specsOnVLAN are the specs of the instances on VLAN id (0: those on the
// cluster bridge).
func specsOnVLAN(specs []nodeapi.InstanceSpec, id int) []nodeapi.InstanceSpec {
	var out []nodeapi.InstanceSpec
	for _, s := range specs {
		if vlanID(s) == id {
			out = append(out, s)
		}
	}
	return out
}

// desiredVLANs are the VLANs the node needs: those of the instances not
// terminated, and of those keep says are still on the node (a launch or
// a removal under way). Two instances that put one VLAN on different
// subnets: the first (by instance ID) has it, the other is an error.
func desiredVLANs(specs []nodeapi.InstanceSpec, keep func(id string) bool) (map[int]vlanNet, []error) {
	specs = slices.Clone(specs)
	sort.Slice(specs, func(i, j int) bool { return specs[i].InstanceID < specs[j].InstanceID })
	want := map[int]vlanNet{}
	var errs []error
	for _, s := range specs {
		if s.Desired == nodeapi.StateTerminated && (keep == nil || !keep(s.InstanceID)) {
			continue
		}
		v, ok, err := vlanOf(s)
		if !ok {
			continue
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if have, dup := want[v.ID]; dup && have != v {
			errs = append(errs, fmt.Errorf("instance %s: VLAN %d on subnet %s gateway %s, but it is on %s gateway %s on this node",
				s.InstanceID, v.ID, v.Subnet, v.Gateway, have.Subnet, have.Gateway))
			continue
		}
		want[v.ID] = v
	}
	return want, errs
}

// diffVLANs is what to remove from and add to have to make want: a VLAN
// whose subnet or gateway changed goes and comes back.
func diffVLANs(have, want map[int]vlanNet) (add, del []int) {
	for id, v := range want {
		if h, ok := have[id]; !ok || h != v {
			add = append(add, id)
		}
	}
	for id, v := range have {
		if w, ok := want[id]; !ok || w != v {
			del = append(del, id)
		}
	}
	slices.Sort(add)
	slices.Sort(del)
	return add, del
}

// vlanState is the VLANs the agent has made, with their services.
type vlanState struct {
	mu      sync.Mutex
	ctx     context.Context // the agent's run: the services end with it
	nl      *netlink.Handle // in Config.NetNS
	nets    map[int]*vlanUp
	cleaned bool   // leftovers of an earlier run looked for
	filter  string // the isolation rules last made (vlanFilterKey)
	failed  map[int]string
}

// close releases the netlink handle; bridges and VLAN devices stay.
func (v *vlanState) close() {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.nl != nil {
		v.nl.Close()
		v.nl = nil
	}
}

// vlanUp is one VLAN made on the node.
type vlanUp struct {
	net  vlanNet
	stop context.CancelFunc
	done chan struct{}
}

// instanceBridge is the bridge an instance's port goes on: its VLAN's
// (made now if the VLAN is new on the node) or the cluster bridge.
func (a *Agent) instanceBridge(s nodeapi.InstanceSpec) (string, error) {
	v, ok, err := vlanOf(s)
	if !ok {
		return a.cfg.Bridge, nil
	}
	if err != nil {
		return "", err
	}
	a.vlans.mu.Lock()
	defer a.vlans.mu.Unlock()
	if err := a.ensureVLAN(v); err != nil {
		return "", err
	}
	return VLANBridge(v.ID), nil
}

// openVLANs gets the netlink handle in Config.NetNS. a.vlans.mu held.
func (a *Agent) openVLANs() error {
	if a.vlans.nl != nil {
		return nil
	}
	if a.cfg.Bridge == "" {
		return errors.New("MANAGED mode's VLANs need the cluster bridge (--bridge): it carries the tagged frames")
	}
	nl, err := netlinkAt(a.cfg.NetNS)
	if err != nil {
		return err
	}
	a.vlans.nl = nl
	if a.vlans.nets == nil {
		a.vlans.nets = map[int]*vlanUp{}
	}
	return nil
}

// ensureVLAN makes VLAN v on the node, unless made already: the VLAN
// device on the cluster bridge, the VLAN bridge with the gateway, and
// the DHCP and metadata services on it. a.vlans.mu held.
func (a *Agent) ensureVLAN(v vlanNet) error {
	if err := a.openVLANs(); err != nil {
		return err
	}
	if up := a.vlans.nets[v.ID]; up != nil {
		if up.net == v {
			return nil
		}
		return fmt.Errorf("VLAN %d is on subnet %s gateway %s on this node, not %s gateway %s", v.ID, up.net.Subnet, up.net.Gateway, v.Subnet, v.Gateway)
	}
	if err := makeVLANLinks(a.vlans.nl, a.cfg.Bridge, v); err != nil {
		return err
	}
	up := &vlanUp{net: v, stop: func() {}}
	a.vlans.nets[v.ID] = up
	a.log.Info("VLAN up", "vlan", v.ID, "bridge", VLANBridge(v.ID), "uplink", vlanDev(v.ID)+"@"+a.cfg.Bridge,
		"subnet", v.Subnet, "gateway", v.Gateway)
	if a.cfg.NoInstanceServices || a.vlans.ctx == nil {
		return nil
	}
	ctx, cancel := context.WithCancel(a.vlans.ctx)
	up.stop, up.done = cancel, make(chan struct{})
	bridge := VLANBridge(v.ID)
	log := a.log.With("bridge", bridge, "vlan", v.ID)
	a.wg.Go(func() {
		defer close(up.done)
		for ctx.Err() == nil {
			ns := &netServices{log: log, bridge: bridge, host: netip.PrefixFrom(v.Gateway, v.Subnet.Bits()), sharedGateway: true,
				specs: func() []nodeapi.InstanceSpec { return specsOnVLAN(a.instanceSpecs(), v.ID) }}
			var err error
			a.inNetNS(func() { err = ns.run(ctx) })
			if err != nil && ctx.Err() == nil {
				log.Error("instance network services stopped; restarting them", "err", err)
				sleep(ctx, 5*time.Second)
			}
		}
	})
	return nil
}

// removeVLAN ends VLAN id's services, then deletes its bridge and VLAN
// device. a.vlans.mu held.
func (a *Agent) removeVLAN(id int) error {
	if up := a.vlans.nets[id]; up != nil {
		up.stop()
		if up.done != nil {
			<-up.done
		}
	}
	delete(a.vlans.nets, id)
	if err := deleteVLANLinks(a.vlans.nl, id); err != nil {
		return err
	}
	a.log.Info("VLAN removed", "vlan", id, "bridge", VLANBridge(id))
	return nil
}

// syncVLANs makes the node's VLANs those its instances need: new ones
// made, ones no instance is on any more removed, with what an earlier
// agent run left (found on the first call). Then the routing between
// them is filtered again. Called after the first desired list arrived.
func (a *Agent) syncVLANs() {
	a.vlans.mu.Lock()
	defer a.vlans.mu.Unlock()
	a.mu.Lock()
	specs := slices.Clone(a.desired)
	keep := map[string]bool{}
	for id, in := range a.insts {
		if in.launching || in.busy || in.removing {
			keep[id] = true
		}
	}
	a.mu.Unlock()
	want, errs := desiredVLANs(specs, func(id string) bool { return keep[id] })
	for _, err := range errs {
		a.log.Warn("instance VLAN", "err", err)
	}
	if len(want) == 0 && a.vlans.nl == nil && a.vlans.cleaned {
		return
	}
	if a.vlans.failed == nil {
		a.vlans.failed = map[int]string{}
	}
	if err := a.openVLANs(); err != nil {
		// Logged once (key 0: no VLAN has that tag).
		if msg := err.Error(); len(want) > 0 && a.vlans.failed[0] != msg {
			a.vlans.failed[0] = msg
			a.log.Error("instance VLANs", "err", err)
		}
		return
	}
	if !a.vlans.cleaned {
		// An earlier run's VLANs (the agent restarted): adopted when
		// still wanted, removed when not.
		left, err := leftoverVLANs(a.vlans.nl, a.cfg.Bridge)
		if err != nil {
			a.log.Error("instance VLANs left by an earlier run", "err", err)
			return
		}
		var gone []int
		for _, id := range left {
			if _, ok := want[id]; !ok {
				gone = append(gone, id)
				if err := deleteVLANLinks(a.vlans.nl, id); err != nil {
					a.log.Error("remove a VLAN left by an earlier run", "vlan", id, "err", err)
				} else {
					a.log.Info("removed a VLAN left by an earlier run", "vlan", id)
				}
			}
		}
		a.dropLeftoverFilters(gone)
		a.vlans.cleaned = true
	}
	have := map[int]vlanNet{}
	for id, up := range a.vlans.nets {
		have[id] = up.net
	}
	add, del := diffVLANs(have, want)
	for _, id := range del {
		if err := a.removeVLAN(id); err != nil {
			a.log.Error("remove VLAN", "vlan", id, "err", err)
		}
	}
	for _, id := range add {
		if err := a.ensureVLAN(want[id]); err != nil {
			if msg := err.Error(); a.vlans.failed[id] != msg {
				a.vlans.failed[id] = msg
				a.log.Error("make VLAN", "vlan", id, "err", err)
			}
			continue
		}
		delete(a.vlans.failed, id)
	}
	if err := a.syncVLANFilter(); err != nil {
		a.log.Error("routing filter between VLANs", "err", err)
	}
}

// vlanBridges are the VLAN bridges made, sorted.
func (a *Agent) vlanBridges() []string {
	a.vlans.mu.Lock()
	defer a.vlans.mu.Unlock()
	var out []string
	for id := range a.vlans.nets {
		out = append(out, VLANBridge(id))
	}
	slices.Sort(out)
	return out
}

// makeVLANLinks makes (or finds) VLAN v's device on the cluster bridge
// and its bridge, with the gateway on the bridge, all up. The device
// comes first (and goes last, deleteVLANLinks): a bridge of an earlier
// run is known as the node's by its device (leftoverVLANs).
func makeVLANLinks(nl *netlink.Handle, cluster string, v vlanNet) error {
	parent, err := nl.LinkByName(cluster)
	if err != nil {
		return fmt.Errorf("VLAN %d: cluster bridge %s: %w", v.ID, cluster, err)
	}
	brName, devName := VLANBridge(v.ID), vlanDev(v.ID)
	dev, err := nl.LinkByName(devName)
	if err == nil {
		vl, ok := dev.(*netlink.Vlan)
		if !ok || vl.VlanId != v.ID || vl.ParentIndex != parent.Attrs().Index {
			return fmt.Errorf("VLAN %d: %s exists and is not VLAN %d on %s", v.ID, devName, v.ID, cluster)
		}
	} else {
		la := netlink.NewLinkAttrs()
		la.Name, la.ParentIndex = devName, parent.Attrs().Index
		if err := nl.LinkAdd(&netlink.Vlan{LinkAttrs: la, VlanId: v.ID}); err != nil {
			return fmt.Errorf("VLAN %d: add %s (802.1Q on %s; the kernel needs the 8021q module): %w", v.ID, devName, cluster, err)
		}
		if dev, err = nl.LinkByName(devName); err != nil {
			return fmt.Errorf("VLAN %d: %s: %w", v.ID, devName, err)
		}
	}
	br, err := nl.LinkByName(brName)
	if err == nil {
		if _, ok := br.(*netlink.Bridge); !ok {
			return fmt.Errorf("VLAN %d: %s exists and is a %s, not a bridge", v.ID, brName, br.Type())
		}
	} else {
		la := netlink.NewLinkAttrs()
		la.Name = brName
		if err := nl.LinkAdd(&netlink.Bridge{LinkAttrs: la}); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("VLAN %d: add bridge %s: %w", v.ID, brName, err)
		}
		if br, err = nl.LinkByName(brName); err != nil {
			return fmt.Errorf("VLAN %d: bridge %s: %w", v.ID, brName, err)
		}
	}
	if dev.Attrs().MasterIndex != br.Attrs().Index {
		if err := nl.LinkSetMaster(dev, br); err != nil {
			return fmt.Errorf("VLAN %d: put %s on %s: %w", v.ID, devName, brName, err)
		}
	}
	for _, l := range []netlink.Link{dev, br} {
		if err := nl.LinkSetUp(l); err != nil {
			return fmt.Errorf("VLAN %d: %s up: %w", v.ID, l.Attrs().Name, err)
		}
	}
	return addGateway(nl, brName, v.Subnet, v.Gateway)
}

// deleteVLANLinks deletes VLAN id's bridge and device (gone already is
// fine).
func deleteVLANLinks(nl *netlink.Handle, id int) error {
	var errs []error
	for _, n := range []string{VLANBridge(id), vlanDev(id)} {
		l, err := nl.LinkByName(n)
		if err != nil {
			var nf netlink.LinkNotFoundError
			if !errors.As(err, &nf) {
				errs = append(errs, fmt.Errorf("VLAN %d: %s: %w", id, n, err))
			}
			continue
		}
		if err := nl.LinkDel(l); err != nil {
			errs = append(errs, fmt.Errorf("VLAN %d: delete %s: %w", id, n, err))
		}
	}
	return errors.Join(errs...)
}

// leftoverVLANs are the VLANs whose device is on the cluster bridge
// (an earlier run's; their bridges go with them).
func leftoverVLANs(nl *netlink.Handle, cluster string) ([]int, error) {
	parent, err := nl.LinkByName(cluster)
	if err != nil {
		return nil, fmt.Errorf("cluster bridge %s: %w", cluster, err)
	}
	links, err := nl.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	var out []int
	for _, l := range links {
		if id, ok := vlanFromName(vlanDevPrefix, l.Attrs().Name); ok && l.Type() == "vlan" && l.Attrs().ParentIndex == parent.Attrs().Index {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out, nil
}

// addGateway puts gw (with the subnet's length) on the bridge.
func addGateway(nl *netlink.Handle, bridge string, p netip.Prefix, gw netip.Addr) error {
	link, err := nl.LinkByName(bridge)
	if err != nil {
		return fmt.Errorf("bridge %s: %w", bridge, err)
	}
	ad := &netlink.Addr{IPNet: &net.IPNet{IP: gw.AsSlice(), Mask: net.CIDRMask(p.Bits(), 32)}}
	if err := nl.AddrAdd(link, ad); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("add %s/%d to %s: %w", gw, p.Bits(), bridge, err)
	}
	return nil
}

// vlanFilterTable is the agent's table (family inet) that keeps the node
// from routing between its VLAN bridges.
func vlanFilterTable(cluster string) *nftables.Table {
	return &nftables.Table{Family: nftables.TableFamilyINet, Name: "ironbark-vlan-" + cluster}
}

// syncVLANFilter makes the routing filter between the VLAN bridges
// match the VLANs made, in one transaction; with none, the table goes.
// a.vlans.mu held.
func (a *Agent) syncVLANFilter() error {
	ids := make([]int, 0, len(a.vlans.nets))
	for id := range a.vlans.nets {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	key := fmt.Sprint(ids)
	if key == a.vlans.filter {
		return nil
	}
	conn, err := nftConn(a.cfg.NetNS)
	if err != nil {
		return err
	}
	defer conn.CloseLasting()
	t := vlanFilterTable(a.cfg.Bridge)
	conn.AddTable(t)
	conn.DelTable(t)
	if len(ids) > 0 {
		conn.AddTable(t)
		ch := conn.AddChain(&nftables.Chain{Name: "between_vlans", Table: t, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityRef(*nftables.ChainPriorityFilter - 10)})
		for _, id := range ids {
			conn.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: betweenVLANs(VLANBridge(id))})
		}
	}
	if err := conn.Flush(); err != nil {
		return fmt.Errorf("nftables table inet %s: %w", t.Name, err)
	}
	a.vlans.filter = key
	return nil
}

// betweenVLANs is the rule that drops what the node would route from the
// VLAN bridge br to another VLAN bridge, unless its destination was
// translated (an elastic IP's DNAT): `iifname BR oifname != BR oifname
// "ibvbr*" ct status & dnat == 0 drop`. Bridged traffic (within one VLAN)
// has br as both devices and passes.
func betweenVLANs(br string) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname(br)},
		&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: ifname(br)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte(vlanBridgePrefix)},
		&expr.Ct{Register: 1, Key: expr.CtKeySTATUS},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(ctStatusDNAT), Xor: binaryutil.NativeEndian.PutUint32(0)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(0)},
		&expr.Verdict{Kind: expr.VerdictDrop},
	}
}

// ctStatusDNAT is conntrack's IPS_DST_NAT status bit.
const ctStatusDNAT = 1 << 5

// dropLeftoverFilters removes the bridge filter tables an earlier
// (killed) run left for the VLAN bridges of ids. a.vlans.mu held.
func (a *Agent) dropLeftoverFilters(ids []int) {
	if len(ids) == 0 {
		return
	}
	conn, err := nftConn(a.cfg.NetNS)
	if err != nil {
		a.log.Warn("bridge filters left by an earlier run", "err", err)
		return
	}
	defer conn.CloseLasting()
	tables, err := conn.ListTablesOfFamily(nftables.TableFamilyBridge)
	if err != nil {
		a.log.Warn("bridge filters left by an earlier run", "err", err)
		return
	}
	n := 0
	for _, t := range tables {
		for _, id := range ids {
			if t.Name == guestFilterPrefix+VLANBridge(id) {
				conn.DelTable(t)
				n++
			}
		}
	}
	if n > 0 {
		if err := conn.Flush(); err != nil {
			a.log.Warn("remove bridge filters left by an earlier run", "err", err)
		}
	}
}

// nftConn is a lasting nftables connection in the namespace at path
// ("" the process's own).
func nftConn(path string) (*nftables.Conn, error) {
	opts := []nftables.ConnOption{nftables.AsLasting()}
	if path != "" {
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("network namespace %s: %w", path, err)
		}
		// A lasting connection dials at once: the descriptor is done then.
		defer unix.Close(fd)
		opts = append(opts, nftables.WithNetNSFd(fd))
	}
	c, err := nftables.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	return c, nil
}

// netlinkAt is a netlink handle in the namespace at path ("" the
// process's own).
func netlinkAt(path string) (*netlink.Handle, error) {
	if path == "" {
		h, err := netlink.NewHandle()
		if err != nil {
			return nil, fmt.Errorf("netlink: %w", err)
		}
		return h, nil
	}
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("network namespace %s: %w", path, err)
	}
	// The handle opens its sockets now.
	defer unix.Close(fd)
	h, err := netlink.NewHandleAt(netns.NsHandle(fd))
	if err != nil {
		return nil, fmt.Errorf("netlink in %s: %w", path, err)
	}
	return h, nil
}
