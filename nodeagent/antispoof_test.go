package nodeagent

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"ironbark/internal/lab"
	"ironbark/internal/nodeapi"
)

// guestOn is a guest: a namespace behind a bridge port named as the agent
// names an instance's tap, with the instance's MAC and address.
type guestOn struct {
	ns   *lab.NetNS
	port string // inside ns
}

func newGuest(t *testing.T, n *lab.LabNet, s nodeapi.InstanceSpec) *guestOn {
	t.Helper()
	h := n.NS.Netlink()
	before := map[string]bool{}
	ls, _ := h.LinkList()
	for _, l := range ls {
		before[l.Attrs().Name] = true
	}
	g := &guestOn{ns: lab.NewNetNS(t)}
	g.port = n.NS.Link(t, n.Bridge, g.ns)
	ls, _ = h.LinkList()
	for _, l := range ls {
		if name := l.Attrs().Name; !before[name] && l.Attrs().MasterIndex != 0 {
			// The bridge side gets the instance's tap name.
			if err := h.LinkSetDown(l); err != nil {
				t.Fatal(err)
			}
			if err := h.LinkSetName(l, TapName(s.InstanceID)); err != nil {
				t.Fatal(err)
			}
			if err := h.LinkSetUp(l); err != nil {
				t.Fatal(err)
			}
		}
	}
	g.setMAC(t, s.MAC)
	ip := netip.MustParseAddr(s.PrivateIP)
	g.ns.AddAddr(t, g.port, netip.PrefixFrom(ip, n.Addr.Bits()))
	l, err := g.ns.Netlink().LinkByName(g.port)
	if err != nil {
		t.Fatal(err)
	}
	// 169.254.169.254 is on the node's bridge, next door.
	if err := g.ns.Netlink().RouteAdd(&netlink.Route{LinkIndex: l.Attrs().Index, Scope: netlink.SCOPE_LINK,
		Dst: &net.IPNet{IP: MetadataAddr.AsSlice(), Mask: net.CIDRMask(32, 32)}}); err != nil {
		t.Fatal(err)
	}
	return g
}

func (g *guestOn) setMAC(t *testing.T, mac string) {
	t.Helper()
	h := g.ns.Netlink()
	l, err := h.LinkByName(g.port)
	if err != nil {
		t.Fatal(err)
	}
	hw, _ := net.ParseMAC(mac)
	if err := h.LinkSetHardwareAddr(l, hw); err != nil {
		t.Fatal(err)
	}
}

// metadata asks the metadata service for the instance ID, from src. The
// connection is made and used right here (no transport goroutines left
// in the namespace when the test ends).
func (g *guestOn) metadata(src netip.Addr) (string, error) {
	var conn net.Conn
	err := g.ns.Do(func() error {
		var err error
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: src.AsSlice()}, Timeout: 3 * time.Second}
		conn, err = d.Dial("tcp", net.JoinHostPort(MetadataAddr.String(), "80"))
		return err
	})
	if err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(3 * time.Second))
	req, _ := http.NewRequest(http.MethodGet, "http://169.254.169.254/latest/meta-data/instance-id", nil)
	if err := req.Write(conn); err != nil {
		return "", err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// serveBridge runs the agent's DHCP, metadata and bridge filter on n's
// bridge for specs until the test ends.
func serveBridge(t *testing.T, n *lab.LabNet, specs ...nodeapi.InstanceSpec) {
	t.Helper()
	svc := &netServices{log: testLogger(t), bridge: n.Bridge, host: n.Addr,
		specs: func() []nodeapi.InstanceSpec { return specs }}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.NS.Do(func() error { return svc.run(ctx) }) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
}

// TestMetadataSpoofing is issue 9's metadata test, on a real bridge with
// the agent's DHCP and metadata services and its bridge filter: each guest
// reads its own metadata; a guest that takes its neighbour's address (and
// then its MAC too) gets nothing.
func TestMetadataSpoofing(t *testing.T) {
	lab.Require(t, "ip")
	n := lab.NewLabNet(t, "")
	at := func(i int) string {
		a := n.Addr.Addr()
		for range i - 1 {
			a = a.Next()
		}
		return a.String()
	}
	a := nodeapi.InstanceSpec{InstanceID: "i-00000000000a0001", MAC: "52:54:00:a0:00:01", PrivateIP: at(10), Desired: nodeapi.StateRunning}
	b := nodeapi.InstanceSpec{InstanceID: "i-00000000000b0002", MAC: "52:54:00:b0:00:02", PrivateIP: at(11), Desired: nodeapi.StateRunning}
	ga, gb := newGuest(t, n, a), newGuest(t, n, b)

	serveBridge(t, n, a, b)

	// Each guest reads its own.
	ipA, ipB := netip.MustParseAddr(a.PrivateIP), netip.MustParseAddr(b.PrivateIP)
	deadline := time.Now().Add(30 * time.Second)
	for {
		id, err := ga.metadata(ipA)
		if err == nil {
			if id != a.InstanceID {
				t.Fatalf("guest A read %q", id)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("guest A never reached its metadata: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if id, err := gb.metadata(ipB); err != nil || id != b.InstanceID {
		t.Fatalf("guest B reads %q %v, want its own %s", id, err, b.InstanceID)
	}

	// B takes A's address: its packets never arrive.
	gb.ns.AddAddr(t, gb.port, netip.PrefixFrom(ipA, n.Addr.Bits()))
	if id, err := gb.metadata(ipA); err == nil {
		t.Fatalf("guest B with A's address read %q", id)
	} else {
		t.Logf("guest B with A's address: %v", err)
	}
	// ... and A's MAC too: still nothing.
	gb.setMAC(t, a.MAC)
	if id, err := gb.metadata(ipA); err == nil {
		t.Fatalf("guest B with A's address and MAC read %q", id)
	} else if !strings.Contains(err.Error(), "timeout") && !strings.Contains(err.Error(), "deadline") {
		t.Logf("guest B with A's address and MAC: %v", err)
	}
	// A is unaffected.
	if id, err := ga.metadata(ipA); err != nil || id != a.InstanceID {
		t.Fatalf("guest A after the spoofing: %q %v", id, err)
	}
}

// TestSharedAddrsStayLocal: two nodes' bridges on one segment both hold
// the instance subnet's gateway and the metadata address (MANAGED-NOVLAN
// with several nodes per cluster). An instance asking for either must
// hear only its own node, and a host on the uplink asking for the
// gateway must hear only the other node: with the agent's filter, ARP for
// the shared addresses never crosses the uplink.
func TestSharedAddrsStayLocal(t *testing.T) {
	lab.Require(t, "ip", "busybox")
	n := lab.NewLabNet(t, "") // this node: its own address on the cluster network
	subnet := netip.MustParsePrefix("10.250.0.0/24")
	gw := netip.MustParseAddr("10.250.0.1")
	spec := nodeapi.InstanceSpec{InstanceID: "i-00000000000c0003", MAC: "52:54:00:c0:00:03", PrivateIP: "10.250.0.10",
		Desired: nodeapi.StateRunning, Network: &nodeapi.InstanceNetwork{Mode: nodeapi.ModeManagedNoVLAN, Subnet: subnet.String(), Gateway: gw.String()}}
	n.NS.AddAddr(t, n.Bridge, netip.PrefixFrom(gw, subnet.Bits())) // ensureGateway's doing
	g := newGuest(t, n, spec)

	// The cluster's switch: this node's uplink is a port of it.
	sw := lab.NewLabNet(t, "")
	uplink := sw.NS.Link(t, sw.Bridge, n.NS)
	ul, err := n.NS.Netlink().LinkByName(uplink)
	if err != nil {
		t.Fatal(err)
	}
	br, err := n.NS.Netlink().LinkByName(n.Bridge)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.NS.Netlink().LinkSetMaster(ul, br); err != nil {
		t.Fatal(err)
	}
	// The other node on the switch: same gateway, same metadata address.
	other := lab.NewNetNS(t)
	otherPort := sw.NS.Link(t, sw.Bridge, other)
	other.AddAddr(t, otherPort, netip.PrefixFrom(gw, subnet.Bits()))
	other.AddAddr(t, otherPort, netip.PrefixFrom(MetadataAddr, 32))
	// A host on the switch in the subnet (another node's instance).
	outside := lab.NewNetNS(t)
	outsidePort := sw.NS.Link(t, sw.Bridge, outside)
	outside.AddAddr(t, outsidePort, netip.MustParsePrefix("10.250.0.20/24"))

	mac := func(ns *lab.NetNS, ifc string) string {
		l, err := ns.Netlink().LinkByName(ifc)
		if err != nil {
			t.Fatal(err)
		}
		return strings.ToUpper(l.Attrs().HardwareAddr.String())
	}
	bridgeMAC, otherMAC := mac(n.NS, n.Bridge), mac(other, otherPort)
	// repliers runs busybox arping and returns the MACs that answered.
	repliers := func(ns *lab.NetNS, ifc string, dst netip.Addr) map[string]bool {
		out, _ := ns.Command(context.Background(), "busybox", "arping", "-c", "3", "-w", "3", "-I", ifc, dst.String()).CombinedOutput()
		got := map[string]bool{}
		for _, l := range strings.Split(string(out), "\n") {
			if i, j := strings.Index(l, "["), strings.Index(l, "]"); strings.Contains(l, "reply from") && i >= 0 && j > i {
				got[strings.ToUpper(l[i+1:j])] = true
			}
		}
		return got
	}
	// Without the filter both nodes answer: the test sees the race.
	if got := repliers(g.ns, g.port, gw); !got[bridgeMAC] || !got[otherMAC] {
		t.Fatalf("before the filter, the instance's ARP for %s was answered by %v; want both nodes (%s here, %s there)", gw, got, bridgeMAC, otherMAC)
	}

	serveBridge(t, n, spec)
	// The filter is in place once the metadata service answers. The
	// guest may have cached the other node's answer from before: forget
	// it at each try.
	deadline := time.Now().Add(30 * time.Second)
	for {
		_ = g.ns.Command(context.Background(), "ip", "neigh", "flush", "all").Run()
		if id, err := g.metadata(netip.MustParseAddr(spec.PrivateIP)); err == nil && id == spec.InstanceID {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the instance never reached its metadata")
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, c := range []struct {
		what string
		ns   *lab.NetNS
		ifc  string
		dst  netip.Addr
		want string
	}{
		{"the instance asks for its gateway", g.ns, g.port, gw, bridgeMAC},
		{"the instance asks for the metadata address", g.ns, g.port, MetadataAddr, bridgeMAC},
		{"another node's instance asks for its gateway", outside, outsidePort, gw, otherMAC},
		{"another node's instance asks for the metadata address", outside, outsidePort, MetadataAddr, otherMAC},
	} {
		got := repliers(c.ns, c.ifc, c.dst)
		if len(got) != 1 || !got[c.want] {
			t.Errorf("%s (%s): answered by %v, want only %s", c.what, c.dst, got, c.want)
		}
	}
}

// TestMetadataBehindRouter: a SYSTEM-mode instance's default route is the
// cluster network's router, not the node; its packets to the metadata
// address still reach this node's metadata service (the bridge filter
// turns them to the bridge), and the router never sees them.
func TestMetadataBehindRouter(t *testing.T) {
	lab.Require(t, "ip")
	n := lab.NewLabNet(t, "") // the node's own address on the cluster network
	subnet := n.Addr.Masked()
	host := func(i int) netip.Addr {
		a := subnet.Addr()
		for range i {
			a = a.Next()
		}
		return a
	}
	spec := nodeapi.InstanceSpec{InstanceID: "i-00000000000c0004", MAC: "52:54:00:c0:00:04", PrivateIP: host(20).String(),
		Desired: nodeapi.StateRunning, Network: &nodeapi.InstanceNetwork{Mode: nodeapi.ModeSystem, Subnet: subnet.String()}}
	g := newGuest(t, n, spec)
	// The cluster's router, on the same bridge; it routes nothing.
	router := lab.NewNetNS(t)
	routerPort := n.NS.Link(t, n.Bridge, router)
	router.AddAddr(t, routerPort, netip.PrefixFrom(host(200), subnet.Bits()))
	// The instance's routes as the cluster's DHCP server gives them: the
	// default route through the router, no route of its own to the
	// metadata address.
	h := g.ns.Netlink()
	l, err := h.LinkByName(g.port)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.RouteDel(&netlink.Route{LinkIndex: l.Attrs().Index, Scope: netlink.SCOPE_LINK,
		Dst: &net.IPNet{IP: MetadataAddr.AsSlice(), Mask: net.CIDRMask(32, 32)}}); err != nil {
		t.Fatal(err)
	}
	if err := h.RouteAdd(&netlink.Route{LinkIndex: l.Attrs().Index, Gw: host(200).AsSlice()}); err != nil {
		t.Fatal(err)
	}
	src := netip.MustParseAddr(spec.PrivateIP)
	if id, err := g.metadata(src); err == nil {
		t.Fatalf("before the agent runs, the router answered the metadata address: %q", id)
	}

	serveBridge(t, n, spec)
	deadline := time.Now().Add(30 * time.Second)
	for {
		id, err := g.metadata(src)
		if err == nil && id == spec.InstanceID {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the instance behind a router never reached its node's metadata service: %q, %v", id, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
