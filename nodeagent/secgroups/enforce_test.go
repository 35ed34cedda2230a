package secgroups

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"ironbark/internal/lab"
	"ironbark/internal/nodeapi"
)

// node is a test node: a namespace with the instance bridge, a public
// bridge toward an "outside" namespace (routed through the node, as
// traffic to an elastic IP is), and instances, each a namespace behind a
// veth on the instance bridge.
type node struct {
	t       *testing.T
	net     *lab.LabNet
	outside *lab.NetNS
	fw      *Firewall
	insts   map[string]*vm
}

type vm struct {
	ns *lab.NetNS
	ip netip.Addr
}

func newNode(t *testing.T) *node {
	lab.Require(t, "ip", "nft")
	n := &node{t: t, net: lab.NewLabNet(t, ""), insts: map[string]*vm{}}
	pub := n.net.NS.Bridge(t, netip.MustParsePrefix("192.0.2.1/24"))
	n.outside = lab.NewNetNS(t)
	end := n.net.NS.Link(t, pub, n.outside)
	n.outside.AddAddr(t, end, netip.MustParsePrefix("192.0.2.2/24"))
	n.outside.Route(t, n.net.Addr.Masked(), netip.MustParseAddr("192.0.2.1"))
	if err := n.net.NS.Do(func() error {
		return os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1\n"), 0o644)
	}); err != nil {
		t.Fatal(err)
	}
	n.fw = n.firewall()
	return n
}

// firewall is a fresh Firewall in the node's namespace (a new agent).
func (n *node) firewall() *Firewall {
	var fw *Firewall
	if err := n.net.NS.Do(func() (err error) { fw, err = New(n.net.Bridge, 0); return err }); err != nil {
		n.t.Fatal(err)
	}
	n.t.Cleanup(fw.Release)
	return fw
}

// instance adds an instance namespace at the nth address of the subnet.
func (n *node) instance(id string, nth int) *vm {
	t := n.t
	ip := n.net.Addr.Addr()
	for range nth {
		ip = ip.Next()
	}
	v := &vm{ns: lab.NewNetNS(t), ip: ip}
	end := n.net.NS.Link(t, n.net.Bridge, v.ns)
	v.ns.AddAddr(t, end, netip.PrefixFrom(ip, n.net.Addr.Bits()))
	v.ns.Route(t, netip.MustParsePrefix("0.0.0.0/0"), n.net.Addr.Addr())
	n.insts[id] = v
	return v
}

// expect checks a list of connections: from, to, port, allowed.
type probe struct {
	what  string
	from  *lab.NetNS
	to    netip.Addr
	port  int
	allow bool
}

func (n *node) expect(probes ...probe) {
	n.t.Helper()
	var wg sync.WaitGroup
	errs := make([]error, len(probes))
	for i, p := range probes {
		wg.Go(func() { errs[i] = p.from.ConnectTCP(p.to, p.port, 700*time.Millisecond) })
	}
	wg.Wait()
	for i, p := range probes {
		switch err := errs[i]; {
		case p.allow && err != nil:
			n.t.Errorf("%s (%s:%d): refused, want allowed: %v", p.what, p.to, p.port, err)
		case !p.allow && err == nil:
			n.t.Errorf("%s (%s:%d): connected, want denied", p.what, p.to, p.port)
		case !p.allow && !isTimeout(err):
			n.t.Errorf("%s (%s:%d): %v, want a silent drop", p.what, p.to, p.port, err)
		}
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func (n *node) apply(insts []Instance, groups []nodeapi.SecurityGroup) {
	n.t.Helper()
	rs, err := Build(insts, groups)
	if err != nil {
		n.t.Fatal(err)
	}
	if _, err := n.fw.Apply(rs); err != nil {
		n.t.Fatal(err)
	}
}

// ruleset is `nft list ruleset` in the node's namespace.
func (n *node) ruleset() string {
	n.t.Helper()
	out, err := n.net.NS.Command(context.Background(), "nft", "list", "ruleset").CombinedOutput()
	if err != nil {
		n.t.Fatalf("nft list ruleset: %v: %s", err, out)
	}
	return string(out)
}

// TestEnforce is issue 12's security group test on real packets: default
// deny inbound, rules by port and CIDR and by peer group (following
// membership), egress rules, DHCP and metadata always open, a rule
// revoked, an instance removed, and an agent restart that leaves the same
// ruleset.
func TestEnforce(t *testing.T) {
	n := newNode(t)
	a := n.instance("i-a", 10) // in app
	b := n.instance("i-b", 11) // in web
	c := n.instance("i-c", 12) // in other
	a.ns.ServeTCP(t, "0.0.0.0", 22)
	b.ns.ServeTCP(t, "0.0.0.0", 22, 80, 8080)
	n.outside.ServeTCP(t, "0.0.0.0", 9000)
	n.net.NS.ServeTCP(t, n.net.Addr.Addr().String(), 2222)
	if err := n.net.NS.Netlink().AddrAdd(mustLink(t, n.net.NS, n.net.Bridge), &netlink.Addr{IPNet: &net.IPNet{IP: MetadataAddr.AsSlice(), Mask: net.CIDRMask(32, 32)}}); err != nil {
		t.Fatal(err)
	}
	n.net.NS.ServeTCP(t, MetadataAddr.String(), 80)
	out := netip.MustParseAddr("192.0.2.2")
	node := n.net.Addr.Addr()

	all := nodeapi.SecurityGroupRule{Protocol: "-1", From: -1, To: -1, CIDR: "0.0.0.0/0"}
	app := nodeapi.SecurityGroup{ID: "sg-app",
		Ingress: []nodeapi.SecurityGroupRule{{Protocol: "tcp", From: 22, To: 22, Group: "sg-web"}},
		Egress:  []nodeapi.SecurityGroupRule{all}}
	web := nodeapi.SecurityGroup{ID: "sg-web",
		Ingress: []nodeapi.SecurityGroupRule{{Protocol: "tcp", From: 80, To: 80, CIDR: "0.0.0.0/0"},
			{Protocol: "tcp", From: 8000, To: 8100, Group: "sg-app"},
			{Protocol: "icmp", From: 8, To: -1, CIDR: "192.0.2.0/24"}},
		Egress: []nodeapi.SecurityGroupRule{{Protocol: "tcp", From: 22, To: 22, Group: "sg-app"}}}
	other := nodeapi.SecurityGroup{ID: "sg-other", Egress: []nodeapi.SecurityGroupRule{all}}
	withMembers := func(g nodeapi.SecurityGroup, ips ...netip.Addr) nodeapi.SecurityGroup {
		g.Members = nil
		for _, ip := range ips {
			g.Members = append(g.Members, ip.String())
		}
		return g
	}
	insts := []Instance{{ID: "i-a", IP: a.ip, Groups: []string{"sg-app"}}, {ID: "i-b", IP: b.ip, Groups: []string{"sg-web"}},
		{ID: "i-c", IP: c.ip, Groups: []string{"sg-other"}}}
	groups := []nodeapi.SecurityGroup{withMembers(app, a.ip), withMembers(web, b.ip), other}
	n.apply(insts, groups)

	n.expect(
		probe{"A to B's open port", a.ns, b.ip, 80, true},
		probe{"A (app) to B's port for app", a.ns, b.ip, 8080, true},
		probe{"A to B's closed port", a.ns, b.ip, 22, false},
		probe{"C to B's open port", c.ns, b.ip, 80, true},
		probe{"C (not app) to B's port for app", c.ns, b.ip, 8080, false},
		probe{"outside to B's open port", n.outside, b.ip, 80, true},
		probe{"outside to B's port for app", n.outside, b.ip, 8080, false},
		probe{"outside to A", n.outside, a.ip, 22, false},
		probe{"B's egress to A:22 (app)", b.ns, a.ip, 22, true},
		probe{"B's egress to outside", b.ns, out, 9000, false},
		probe{"B's egress to the node", b.ns, node, 2222, false},
		probe{"B to the metadata service", b.ns, MetadataAddr, 80, true},
		probe{"A's egress to outside", a.ns, out, 9000, true},
		probe{"C's egress to A (A denies)", c.ns, a.ip, 22, false},
	)

	// ICMP: echo requests from the outside's CIDR, not from A.
	if err := n.outside.Ping(b.ip, 2*time.Second); err != nil {
		t.Errorf("outside pings B (icmp type 8 allowed from 192.0.2.0/24): %v", err)
	}
	if err := a.ns.Ping(b.ip, 700*time.Millisecond); err == nil {
		t.Error("A pinged B: no icmp rule for A's address")
	}
	if err := n.outside.Ping(a.ip, 700*time.Millisecond); err == nil {
		t.Error("outside pinged A: app allows no icmp")
	}

	// An app instance on another node, at the outside's address: only
	// app's member set changes (no chain), and B lets it in on 8080.
	rebuilds := n.fw.rebuilds
	groups = []nodeapi.SecurityGroup{withMembers(app, a.ip, out), withMembers(web, b.ip), other}
	n.apply(insts, groups)
	n.expect(probe{"an app member elsewhere to B's port for app", n.outside, b.ip, 8080, true})
	groups = []nodeapi.SecurityGroup{withMembers(app, a.ip), withMembers(web, b.ip), other}
	n.apply(insts, groups)
	n.expect(probe{"the member gone, to B's port for app", n.outside, b.ip, 8080, false},
		probe{"A to B's port for app", a.ns, b.ip, 8080, true})
	if n.fw.rebuilds != rebuilds {
		t.Errorf("a membership change rebuilt the table (%d rebuilds, want %d)", n.fw.rebuilds, rebuilds)
	}

	// D is launched into app: B lets it in on 8080 (membership grows).
	d := n.instance("i-d", 13)
	d.ns.ServeTCP(t, "0.0.0.0", 22)
	insts = append(insts, Instance{ID: "i-d", IP: d.ip, Groups: []string{"sg-app"}})
	groups = []nodeapi.SecurityGroup{withMembers(app, a.ip, d.ip), withMembers(web, b.ip), other}
	n.apply(insts, groups)
	n.expect(probe{"D (app) to B's port for app", d.ns, b.ip, 8080, true},
		probe{"B's egress to D:22 (app)", b.ns, d.ip, 22, true})

	// Revoke web's port 80 (one chain rewritten, not the table).
	web80 := web
	web80.Ingress = web.Ingress[1:]
	groups = []nodeapi.SecurityGroup{withMembers(app, a.ip, d.ip), withMembers(web80, b.ip), other}
	rebuilds = n.fw.rebuilds
	n.apply(insts, groups)
	if n.fw.rebuilds != rebuilds {
		t.Error("a revoke rebuilt the table rather than web's chain")
	}
	n.expect(probe{"A to B's revoked port", a.ns, b.ip, 80, false},
		probe{"A to B's port for app, still", a.ns, b.ip, 8080, true})

	// The agent restarts: its first Apply rebuilds the table from the
	// same state, and the ruleset is the same.
	before := n.ruleset()
	n.fw = n.firewall()
	if got := n.ruleset(); got != before {
		t.Fatalf("a new agent changed the rules before it heard from the controller:\n%s", got)
	}
	n.apply(insts, groups)
	if after := n.ruleset(); after != before {
		t.Fatalf("ruleset after a restart differs:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if !strings.Contains(before, "table inet "+TableName(n.net.Bridge)) || !strings.Contains(before, "tcp dport 8000-8100 accept") {
		t.Fatalf("ruleset lacks the table or web's rule:\n%s", before)
	}
	t.Logf("ruleset:\n%s", before)

	// D is terminated: it leaves app, its chains go.
	insts = insts[:3]
	groups = []nodeapi.SecurityGroup{withMembers(app, a.ip), withMembers(web80, b.ip), other}
	n.apply(insts, groups)
	n.expect(probe{"D (gone) to B's port for app", d.ns, b.ip, 8080, false},
		probe{"A to B's port for app", a.ns, b.ip, 8080, true})
	if rs := n.ruleset(); strings.Contains(rs, "i-d") || strings.Contains(rs, d.ip.String()) {
		t.Fatalf("terminated instance still in the ruleset:\n%s", rs)
	}
}

func mustLink(t *testing.T, ns *lab.NetNS, name string) netlink.Link {
	l, err := ns.Netlink().LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	return l
}
