package nodeagent

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"ironbark/internal/lab"
	"ironbark/internal/nodeapi"
	"ironbark/nodeagent/natmap"
	"ironbark/nodeagent/secgroups"
)

func vlanSpec(id string, vlan int, subnet, gw, ip string) nodeapi.InstanceSpec {
	return nodeapi.InstanceSpec{InstanceID: id, PrivateIP: ip, Desired: nodeapi.StateRunning,
		Network: &nodeapi.InstanceNetwork{Mode: nodeapi.ModeManaged, Subnet: subnet, Gateway: gw, VLAN: vlan}}
}

func TestVLANNames(t *testing.T) {
	for _, id := range []int{1, 10, 4094} {
		br, dev := VLANBridge(id), vlanDev(id)
		if len(br) > 15 || len(dev) > 15 {
			t.Errorf("VLAN %d: names %q %q longer than IFNAMSIZ-1", id, br, dev)
		}
		if got, ok := vlanFromName(vlanBridgePrefix, br); !ok || got != id {
			t.Errorf("%s: %d %v", br, got, ok)
		}
		if got, ok := vlanFromName(vlanDevPrefix, dev); !ok || got != id {
			t.Errorf("%s: %d %v", dev, got, ok)
		}
		if strings.HasPrefix(br, tapPrefix) || strings.HasPrefix(dev, tapPrefix) {
			t.Errorf("VLAN %d's names %s %s look like an instance's port to the bridge filter", id, br, dev)
		}
	}
	for _, n := range []string{"ibvbr", "ibvbr0", "ibvbr4095", "ibvbr012", "ibvbrx", "ibvlan7x", "xenbr0", "ibvbr-1"} {
		if id, ok := vlanFromName(vlanBridgePrefix, n); ok {
			t.Errorf("%s read as VLAN %d", n, id)
		}
		if id, ok := vlanFromName(vlanDevPrefix, n); ok {
			t.Errorf("%s read as VLAN %d", n, id)
		}
	}
}

func TestVLANOf(t *testing.T) {
	for _, tc := range []struct {
		name string
		spec nodeapi.InstanceSpec
		ok   bool
		err  string
		want vlanNet
	}{
		{"managed", vlanSpec("i-1", 10, "10.88.16.0/24", "10.88.16.1", "10.88.16.5"), true, "",
			vlanNet{10, netip.MustParsePrefix("10.88.16.0/24"), netip.MustParseAddr("10.88.16.1")}},
		{"no vlan", vlanSpec("i-1", 0, "10.88.0.0/16", "10.88.0.1", "10.88.0.5"), false, "", vlanNet{}},
		{"novlan mode", nodeapi.InstanceSpec{InstanceID: "i-1", Network: &nodeapi.InstanceNetwork{Mode: nodeapi.ModeManagedNoVLAN, VLAN: 5,
			Subnet: "10.88.0.0/16", Gateway: "10.88.0.1"}}, false, "", vlanNet{}},
		{"older controller", nodeapi.InstanceSpec{InstanceID: "i-1"}, false, "", vlanNet{}},
		{"tag too big", vlanSpec("i-1", 4095, "10.88.16.0/24", "10.88.16.1", ""), true, "want 1 to 4094", vlanNet{}},
		{"negative tag", vlanSpec("i-1", -3, "10.88.16.0/24", "10.88.16.1", ""), true, "want 1 to 4094", vlanNet{}},
		{"bad subnet", vlanSpec("i-1", 3, "10.88.16.0", "10.88.16.1", ""), true, "subnet", vlanNet{}},
		{"v6 subnet", vlanSpec("i-1", 3, "fd00::/64", "fd00::1", ""), true, "subnet", vlanNet{}},
		{"gateway outside", vlanSpec("i-1", 3, "10.88.16.0/24", "10.88.17.1", ""), true, "not in its subnet", vlanNet{}},
	} {
		v, ok, err := vlanOf(tc.spec)
		switch {
		case ok != tc.ok:
			t.Errorf("%s: ok %v, want %v", tc.name, ok, tc.ok)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%s: error %v, want one saying %q", tc.name, err, tc.err)
		case tc.err == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.err == "" && v != tc.want:
			t.Errorf("%s: %+v, want %+v", tc.name, v, tc.want)
		}
	}
}

func TestDesiredVLANs(t *testing.T) {
	a1 := vlanSpec("i-a1", 10, "10.88.16.0/24", "10.88.16.1", "10.88.16.10")
	a2 := vlanSpec("i-a2", 10, "10.88.16.0/24", "10.88.16.1", "10.88.16.11")
	b1 := vlanSpec("i-b1", 11, "10.88.17.0/24", "10.88.17.1", "10.88.17.10")
	c1 := vlanSpec("i-c1", 12, "10.88.18.0/24", "10.88.18.1", "10.88.18.10")
	c1.Desired = nodeapi.StateTerminated
	bad := vlanSpec("i-bad", 10, "10.88.99.0/24", "10.88.99.1", "10.88.99.10") // VLAN 10 on another subnet
	plain := nodeapi.InstanceSpec{InstanceID: "i-p", Desired: nodeapi.StateRunning,
		Network: &nodeapi.InstanceNetwork{Mode: nodeapi.ModeManagedNoVLAN, Subnet: "10.88.0.0/16", Gateway: "10.88.0.1"}}
	specs := []nodeapi.InstanceSpec{bad, b1, a2, plain, c1, a1}

	want, errs := desiredVLANs(specs, nil)
	if len(want) != 2 || want[10].Subnet.String() != "10.88.16.0/24" || want[11].Gateway.String() != "10.88.17.1" {
		t.Errorf("VLANs %v: want 10 and 11 (12's only instance is terminated)", want)
	}
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "i-bad") {
		t.Errorf("errors %v: want one for i-bad's second subnet on VLAN 10", errs)
	}
	// A terminated instance whose domain is still going keeps its VLAN.
	want, _ = desiredVLANs(specs, func(id string) bool { return id == "i-c1" })
	if _, ok := want[12]; !ok || len(want) != 3 {
		t.Errorf("VLANs %v: want 12 kept while i-c1 is removed", want)
	}

	have := map[int]vlanNet{10: want[10], 12: want[12], 13: {ID: 13}}
	moved := want[11]
	moved.Subnet = netip.MustParsePrefix("10.88.40.0/24")
	have[11] = moved
	delete(want, 12)
	add, del := diffVLANs(have, want)
	if fmt.Sprint(add) != "[11]" || fmt.Sprint(del) != "[11 12 13]" {
		t.Errorf("add %v del %v: want add [11] (its subnet changed), del [11 12 13]", add, del)
	}

	if got := specsOnVLAN(specs, 10); len(got) != 3 {
		t.Errorf("on VLAN 10: %d instances, want 3", len(got))
	}
	if got := specsOnVLAN(specs, 0); len(got) != 1 || got[0].InstanceID != "i-p" {
		t.Errorf("on the cluster bridge: %v, want i-p", got)
	}
}

// TestVLANBridgesIsolated: the node's routing between two VLAN bridges is
// dropped by the agent's filter (group to group by private address),
// except an elastic IP's DNAT; a VLAN bridge's ports go through the
// security groups' chains like the cluster bridge's. The host kernel here
// has no 802.1Q, so the bridges are made as the agent makes them minus
// the VLAN device (that part runs in the Xen node: nodeagent/e2e).
func TestVLANBridgesIsolated(t *testing.T) {
	lab.Require(t, "ip", "nft")
	node := lab.NewNetNS(t)
	nsPath := "/run/netns/" + node.Name
	h := node.Netlink()
	type guest struct {
		ns *lab.NetNS
		ip netip.Addr
	}
	mk := func(br string, gw netip.Prefix, ip string) *guest {
		g := &guest{ns: lab.NewNetNS(t), ip: netip.MustParseAddr(ip)}
		end := node.Link(t, br, g.ns)
		g.ns.AddAddr(t, end, netip.PrefixFrom(g.ip, gw.Bits()))
		g.ns.Route(t, netip.MustParsePrefix("0.0.0.0/0"), gw.Addr())
		return g
	}
	gw10, gw20 := netip.MustParsePrefix("10.61.10.1/24"), netip.MustParsePrefix("10.61.20.1/24")
	for id, gw := range map[int]netip.Prefix{10: gw10, 20: gw20} {
		la := netlink.NewLinkAttrs()
		la.Name = VLANBridge(id)
		if err := h.LinkAdd(&netlink.Bridge{LinkAttrs: la}); err != nil {
			t.Fatal(err)
		}
		if err := addGateway(h, la.Name, gw.Masked(), gw.Addr()); err != nil {
			t.Fatal(err)
		}
		l, _ := h.LinkByName(la.Name)
		if err := h.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
	}
	a1, a2 := mk(VLANBridge(10), gw10, "10.61.10.10"), mk(VLANBridge(10), gw10, "10.61.10.11")
	b1 := mk(VLANBridge(20), gw20, "10.61.20.10")
	if err := node.Do(func() error {
		return os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1\n"), 0o644)
	}); err != nil {
		t.Fatal(err)
	}
	ping := func(from *guest, to netip.Addr, want bool, why string) {
		t.Helper()
		wait := time.Second
		if want {
			wait = 3 * time.Second
		}
		err := from.ns.Ping(to, wait)
		if want && err != nil {
			t.Fatalf("%s -> %s: %v; want an answer (%s)", from.ip, to, err, why)
		}
		if !want && err == nil {
			t.Fatalf("%s -> %s answered; want none (%s)", from.ip, to, why)
		}
	}
	// The node routes between them as any router would...
	ping(a1, b1.ip, true, "no filter yet")

	a := &Agent{cfg: Config{NetNS: nsPath, Bridge: "ibclu0"}, log: testLogger(t)}
	a.vlans.nets = map[int]*vlanUp{10: {net: vlanNet{ID: 10}}, 20: {net: vlanNet{ID: 20}}}
	if err := a.syncVLANFilter(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = exec.Command("ip", "netns", "exec", node.Name, "nft", "delete", "table", "inet", vlanFilterTable("ibclu0").Name).Run()
	})
	// ... until the agent's filter says groups meet by public address only.
	ping(a1, b1.ip, false, "VLAN 10 to VLAN 20 by private address")
	ping(b1, a1.ip, false, "VLAN 20 to VLAN 10 by private address")
	ping(a1, a2.ip, true, "one VLAN: bridged")
	ping(a1, gw20.Addr(), true, "the node's own address is not routed") // input, not forward

	// An elastic IP of b1's: reached from VLAN 10 through the DNAT.
	pub := netip.MustParseAddr("198.51.100.77")
	fd, err := os.Open(nsPath)
	if err != nil {
		t.Fatal(err)
	}
	defer fd.Close()
	nat, err := natmap.New(natmap.Config{NetNS: int(fd.Fd()), Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer nat.Close()
	nat.SetBridges([]string{VLANBridge(10), VLANBridge(20)})
	if err := nat.Apply([]natmap.Mapping{{Public: pub, Private: b1.ip}}, []netip.Prefix{gw10.Masked(), gw20.Masked()}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = exec.Command("ip", "netns", "exec", node.Name, "nft", "delete", "table", "ip", natmap.TableName).Run()
	})
	ping(a1, pub, true, "b1's elastic IP")
	ping(a1, b1.ip, false, "still not by private address")

	// The security groups' chains see the VLAN bridges' ports: group A
	// lets nothing in, so a2 no longer answers a1 on their own VLAN.
	var fw *secgroups.Firewall
	if err := node.Do(func() (err error) { fw, err = secgroups.New("ibclu0", 0); return err }); err != nil {
		t.Fatal(err)
	}
	defer fw.Close()
	all := []nodeapi.SecurityGroupRule{{Protocol: "-1", CIDR: "0.0.0.0/0"}}
	rs, err := secgroups.Build([]secgroups.Instance{{ID: "i-a1", IP: a1.ip, Groups: []string{"sg-a"}}, {ID: "i-a2", IP: a2.ip, Groups: []string{"sg-a"}},
		{ID: "i-b1", IP: b1.ip, Groups: []string{"sg-b"}}},
		[]nodeapi.SecurityGroup{{ID: "sg-a", Egress: all}, {ID: "sg-b", Ingress: all, Egress: all}})
	if err != nil {
		t.Fatal(err)
	}
	rs.Bridges = []string{VLANBridge(10), VLANBridge(20)}
	if _, err := fw.Apply(rs); err != nil {
		t.Fatal(err)
	}
	ping(a1, a2.ip, false, "group A lets nothing in")
	ping(a1, pub, true, "group B lets everything in")

	// No VLAN left: no table left.
	a.vlans.nets = map[int]*vlanUp{}
	if err := a.syncVLANFilter(); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("ip", "netns", "exec", node.Name, "nft", "list", "tables").CombinedOutput()
	if err != nil || strings.Contains(string(out), vlanFilterTable("ibclu0").Name) {
		t.Fatalf("tables after the last VLAN: %v %s", err, out)
	}
	ping(a1, b1.ip, true, "no VLAN filter any more")
}
