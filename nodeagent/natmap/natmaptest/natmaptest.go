// Package natmaptest builds, for tests, the networks elastic IPs work in
// out of network namespaces: an "outside" namespace on a public bridge,
// nodes (each a namespace with a public leg on that bridge and an instance
// bridge of its cluster's subnet) and instances (namespaces on a node's
// bridge that answer TCP with their name and the caller's address).
// Everything is made with unique names and removed when the test ends.
package natmaptest

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"ironbark/internal/lab"
)

// Port is where every instance answers.
const Port = 80

// World is the outside: a namespace holding the public bridge, with its
// own address on it (the client, and the nodes' router).
type World struct {
	Out    *lab.NetNS
	Bridge string
	Addr   netip.Prefix // the outside's address, e.g. 198.51.100.1/24
}

// NewWorld makes the outside namespace with the public bridge at addr.
func NewWorld(t testing.TB, addr string) *World {
	t.Helper()
	lab.Require(t, "ip", "nft")
	p := netip.MustParsePrefix(addr)
	ns := lab.NewNetNS(t)
	return &World{Out: ns, Bridge: ns.Bridge(t, p), Addr: p}
}

// Node is a node namespace: its public interface on the world's bridge
// and its instance bridge, whose address is the cluster subnet's gateway.
type Node struct {
	NS     *lab.NetNS
	Public string // the public interface's name
	Bridge string // the instance bridge
	Subnet netip.Prefix
	nsfd   int
}

// AddNode makes a node with public address pub (with the world's prefix
// length) and instance subnet subnet (its bridge takes the first address;
// "" leaves the bridge without one, for an agent to give it). IPv4
// forwarding is off, as on a fresh node: natmap turns it on.
func (w *World) AddNode(t testing.TB, pub string, subnet string) *Node {
	t.Helper()
	ns := lab.NewNetNS(t)
	n := &Node{NS: ns}
	n.Public = w.Out.Link(t, w.Bridge, ns)
	ns.AddAddr(t, n.Public, netip.PrefixFrom(netip.MustParseAddr(pub), w.Addr.Bits()))
	var gw netip.Prefix
	if subnet != "" {
		n.Subnet = netip.MustParsePrefix(subnet)
		gw = netip.PrefixFrom(n.Subnet.Addr().Next(), n.Subnet.Bits())
	}
	n.Bridge = ns.Bridge(t, gw)
	fd, err := unix.Open("/run/netns/"+ns.Name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("open netns %s: %v", ns.Name, err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	n.nsfd = fd
	return n
}

// NetNSFd is an fd of the node's namespace (natmap.Config.NetNS).
func (n *Node) NetNSFd() int { return n.nsfd }

// NetNSPath is the node namespace's path (nodeagent.Config.NetNS).
func (n *Node) NetNSPath() string { return "/run/netns/" + n.NS.Name }

// Forwarding reads /proc/sys/net/ipv4/conf/IFNAME/forwarding in the
// node's namespace ("all" for the namespace's own setting).
func (n *Node) Forwarding(t testing.TB, ifname string) string {
	t.Helper()
	var v []byte
	if err := n.NS.Do(func() (err error) {
		v, err = os.ReadFile("/proc/sys/net/ipv4/conf/" + ifname + "/forwarding")
		return err
	}); err != nil {
		t.Fatalf("forwarding of %s in %s: %v", ifname, n.NS.Name, err)
	}
	return strings.TrimSpace(string(v))
}

// Ruleset is `nft list ruleset` in the node's namespace.
func (n *Node) Ruleset(t testing.TB) string {
	t.Helper()
	out, err := n.NS.Command(context.Background(), "nft", "list", "ruleset").CombinedOutput()
	if err != nil {
		t.Fatalf("nft list ruleset in %s: %v\n%s", n.NS.Name, err, out)
	}
	return string(out)
}

// NATTable is `nft list table ip ironbark-nat` in the node's namespace.
func (n *Node) NATTable(t testing.TB) string {
	t.Helper()
	out, err := n.NS.Command(context.Background(), "nft", "list", "table", "ip", "ironbark-nat").CombinedOutput()
	if err != nil {
		t.Fatalf("nft list table ip ironbark-nat in %s: %v\n%s", n.NS.Name, err, out)
	}
	return string(out)
}

// Instance is an instance namespace on a node's bridge.
type Instance struct {
	Name string
	NS   *lab.NetNS
	IP   netip.Addr
}

// AddInstance makes an instance at ip on the node's bridge, its default
// route through the node, answering on Port with "NAME CALLER-ADDRESS".
func (n *Node) AddInstance(t testing.TB, name, ip string) *Instance {
	t.Helper()
	return n.AddInstanceIn(t, name, ip, n.Subnet)
}

// AddInstanceIn is AddInstance in the given subnet (whose first address
// is the gateway).
func (n *Node) AddInstanceIn(t testing.TB, name, ip string, subnet netip.Prefix) *Instance {
	t.Helper()
	ns := lab.NewNetNS(t)
	in := &Instance{Name: name, NS: ns, IP: netip.MustParseAddr(ip)}
	dev := n.NS.Link(t, n.Bridge, ns)
	ns.AddAddr(t, dev, netip.PrefixFrom(in.IP, subnet.Bits()))
	gw := subnet.Addr().Next()
	if err := ns.Netlink().RouteAdd(&netlink.Route{Gw: gw.AsSlice()}); err != nil {
		t.Fatalf("default route via %s in %s: %v", gw, ns.Name, err)
	}
	Serve(t, ns, name)
	return in
}

// Serve answers on Port in ns with "NAME CALLER-ADDRESS" until the test
// ends.
func Serve(t testing.TB, ns *lab.NetNS, name string) {
	t.Helper()
	var ln net.Listener
	if err := ns.Do(func() error {
		var err error
		ln, err = net.Listen("tcp4", fmt.Sprintf(":%d", Port))
		return err
	}); err != nil {
		t.Fatalf("listen in %s: %v", ns.Name, err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
			fmt.Fprintf(c, "%s %s\n", name, host)
			c.Close()
		}
	}()
}

// Dial connects from ns to addr:Port and returns what answered ("NAME
// CALLER-ADDRESS"). A refused or unreachable address is an error; so is
// silence for 3 s (a dropped packet has no other sign).
func Dial(ns *lab.NetNS, addr string) (string, error) {
	var answer string
	err := ns.Do(func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp4", net.JoinHostPort(addr, fmt.Sprint(Port)))
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(3 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			return err
		}
		answer = strings.TrimSpace(line)
		return nil
	})
	return answer, err
}

// MustReach dials addr from ns and fails unless the answer is want (the
// instance's name and the caller's address as the instance saw it).
func MustReach(t testing.TB, ns *lab.NetNS, addr, want string) {
	t.Helper()
	got, err := Dial(ns, addr)
	if err != nil {
		t.Fatalf("dial %s from %s: %v (want %q)", addr, ns.Name, err, want)
	}
	if got != want {
		t.Fatalf("dial %s from %s: answered %q, want %q", addr, ns.Name, got, want)
	}
}

// MustNotReach fails if ns reaches addr.
func MustNotReach(t testing.TB, ns *lab.NetNS, addr string) {
	t.Helper()
	got, err := Dial(ns, addr)
	if err == nil {
		t.Fatalf("dial %s from %s: answered %q, want no connection", addr, ns.Name, got)
	}
	t.Logf("dial %s from %s: %v (as it should)", addr, ns.Name, err)
}
