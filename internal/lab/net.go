package lab

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// T is the part of testing.TB the network helpers use, so that benchmark
// programs (bench/) can build the same lab networks outside `go test`.
type T interface {
	Helper()
	Cleanup(func())
	Fatalf(format string, args ...any)
	Logf(format string, args ...any)
}

// IfName returns a fresh interface or namespace name: prefix plus a
// random suffix, at most 15 characters (the kernel's IFNAMSIZ-1), so
// parallel tests never collide.
func IfName(prefix string) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	n := prefix + hex.EncodeToString(b[:])
	if len(n) > 15 {
		n = n[:15]
	}
	return n
}

// NetNS is a named network namespace (/run/netns/NAME) created for one
// test and deleted, with every interface in it, when the test ends.
type NetNS struct {
	Name   string
	handle netns.NsHandle
	nl     *netlink.Handle
}

// NewNetNS creates a namespace with its loopback up. Requires root; call
// Require first in tests.
func NewNetNS(t T) *NetNS {
	t.Helper()
	reapStale(t)
	name := IfName("ibns")
	h, err := newNamedNS(name)
	if err != nil {
		t.Fatalf("create netns %s: %v", name, err)
	}
	unmark := mark("netns", name)
	ns := &NetNS{Name: name, handle: h}
	t.Cleanup(func() {
		if ns.nl != nil {
			ns.nl.Close()
		}
		ns.handle.Close()
		if err := netns.DeleteNamed(name); err != nil {
			t.Logf("delete netns %s: %v", name, err)
		}
		unmark()
	})
	ns.nl, err = netlink.NewHandleAt(h)
	if err != nil {
		t.Fatalf("netlink in %s: %v", name, err)
	}
	lo, err := ns.nl.LinkByName("lo")
	if err == nil {
		err = ns.nl.LinkSetUp(lo)
	}
	if err != nil {
		t.Fatalf("loopback up in %s: %v", name, err)
	}
	return ns
}

// newNamedNS creates the namespace on a locked thread and returns that
// thread to its own namespace (netns.NewNamed switches the caller).
func newNamedNS(name string) (netns.NsHandle, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return 0, err
	}
	defer orig.Close()
	h, err := netns.NewNamed(name)
	if err != nil {
		return 0, err
	}
	if err := netns.Set(orig); err != nil {
		// This thread is stuck in the new namespace: never unlock it, so
		// the runtime discards it instead of reusing it.
		runtime.LockOSThread()
		h.Close()
		return 0, fmt.Errorf("return to original netns: %w", err)
	}
	return h, nil
}

// Netlink is a netlink handle operating inside the namespace.
func (ns *NetNS) Netlink() *netlink.Handle { return ns.nl }

// Do runs fn on an OS thread switched into the namespace. Sockets that fn
// opens belong to the namespace for their whole life, so the usual pattern
// is to open listeners in Do and serve them from ordinary goroutines.
// Goroutines started inside fn do not inherit the namespace.
func (ns *NetNS) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		if err := netns.Set(ns.handle); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter netns %s: %w", ns.Name, err)
			return
		}
		errc <- fn()
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		} // else: leave the thread locked; it exits with the goroutine.
	}()
	return <-errc
}

// Command returns a command that runs inside the namespace
// (`ip netns exec NAME ...`).
func (ns *NetNS) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns.Name, name}, args...)...)
}

// Process is a program started in a namespace by Start.
type Process struct {
	Cmd  *exec.Cmd
	out  *Buffer
	done chan struct{}
}

// Wait waits for the process to end. Start already waits for it in the
// background (exec.Cmd allows one Wait): use this, never Cmd.Wait.
func (p *Process) Wait() { <-p.done }

// Exited reports whether the process has ended.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Kill ends the process and its group now (SIGKILL) and waits for it;
// the test's cleanup then has nothing left to stop.
func (p *Process) Kill() {
	_ = syscall.Kill(-p.Cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// Output is what the process wrote to stdout and stderr so far.
func (p *Process) Output() string { return p.out.String() }

// Buffer collects output written from several goroutines: the logs of a
// server under test, a process's stdout and stderr.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String is everything written so far.
func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Start runs a program inside the namespace in the background. It is
// killed (SIGTERM, then SIGKILL after 5 s) and waited for when the test
// ends; its output is logged then.
func (ns *NetNS) Start(t T, name string, args ...string) *Process {
	t.Helper()
	out := &Buffer{}
	cmd := ns.Command(context.Background(), name, args...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s in %s: %v", name, ns.Name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		// The process group: `ip netns exec` execs the program, but the
		// program may fork (dnsmasq, in.tftpd children).
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		if s := out.String(); s != "" {
			t.Logf("%s output:\n%s", name, s)
		}
	})
	return &Process{Cmd: cmd, out: out, done: done}
}

func (ns *NetNS) link(t T, name string) netlink.Link {
	t.Helper()
	l, err := ns.nl.LinkByName(name)
	if err != nil {
		t.Fatalf("link %s in %s: %v", name, ns.Name, err)
	}
	return l
}

func (ns *NetNS) up(t T, l netlink.Link) {
	t.Helper()
	if err := ns.nl.LinkSetUp(l); err != nil {
		t.Fatalf("set %s up in %s: %v", l.Attrs().Name, ns.Name, err)
	}
}

// AddAddr assigns an address with its prefix length ("10.1.0.1/24") to
// an interface in the namespace.
func (ns *NetNS) AddAddr(t T, ifname string, p netip.Prefix) {
	t.Helper()
	a, err := netlink.ParseAddr(p.String())
	if err == nil {
		err = ns.nl.AddrAdd(ns.link(t, ifname), a)
	}
	if err != nil {
		t.Fatalf("address %s on %s in %s: %v", p, ifname, ns.Name, err)
	}
}

// Bridge creates an up bridge in the namespace, with address p when p is
// valid, and returns its name. IPv6 DAD is off on it so link-local
// addresses are usable at once.
func (ns *NetNS) Bridge(t T, p netip.Prefix) string {
	t.Helper()
	name := IfName("ibbr")
	la := netlink.NewLinkAttrs()
	la.Name = name
	br := &netlink.Bridge{LinkAttrs: la}
	if err := ns.nl.LinkAdd(br); err != nil {
		t.Fatalf("add bridge %s in %s: %v", name, ns.Name, err)
	}
	ns.noDAD(t, name)
	if p.IsValid() {
		ns.AddAddr(t, name, p)
	}
	ns.up(t, ns.link(t, name))
	return name
}

// noDAD turns off IPv6 duplicate address detection on an interface, so
// its link-local address is not "tentative" for a second or two.
func (ns *NetNS) noDAD(t T, ifname string) {
	t.Helper()
	path := "/proc/sys/net/ipv6/conf/" + ifname + "/accept_dad"
	err := ns.Do(func() error {
		// /proc/sys/net is per network namespace of the opening thread.
		return writeFile(path, "0")
	})
	if err != nil {
		t.Logf("accept_dad off on %s: %v (continuing)", ifname, err)
	}
}

// Veth creates a veth pair inside the namespace, both ends up. The first
// end is enslaved to bridge when bridge is not empty; the names of both
// ends are returned (a: bridge side, b: the free end, e.g. for a client).
func (ns *NetNS) Veth(t T, bridge string) (a, b string) {
	t.Helper()
	a, b = IfName("ibva"), IfName("ibvb")
	la := netlink.NewLinkAttrs()
	la.Name = a
	v := &netlink.Veth{LinkAttrs: la, PeerName: b}
	if err := ns.nl.LinkAdd(v); err != nil {
		t.Fatalf("add veth %s/%s in %s: %v", a, b, ns.Name, err)
	}
	ns.noDAD(t, a)
	ns.noDAD(t, b)
	la2 := ns.link(t, a)
	if bridge != "" {
		if err := ns.nl.LinkSetMaster(la2, ns.link(t, bridge)); err != nil {
			t.Fatalf("enslave %s to %s: %v", a, bridge, err)
		}
	}
	ns.up(t, la2)
	ns.up(t, ns.link(t, b))
	return a, b
}

// Tap creates a persistent tap device in the namespace, enslaved to
// bridge and up, for a qemu started inside the namespace
// (`-netdev tap,ifname=NAME,script=no,downscript=no`).
func (ns *NetNS) Tap(t T, bridge string) string {
	t.Helper()
	name := IfName("ibtap")
	la := netlink.NewLinkAttrs()
	la.Name = name
	tap := &netlink.Tuntap{LinkAttrs: la, Mode: netlink.TUNTAP_MODE_TAP, Flags: netlink.TUNTAP_DEFAULTS | netlink.TUNTAP_NO_PI}
	// A tap is made with an ioctl on /dev/net/tun, which acts in the
	// calling thread's namespace, not the netlink handle's: create it
	// from inside.
	err := ns.Do(func() error {
		if err := netlink.LinkAdd(tap); err != nil {
			return err
		}
		// LinkAdd opened queue fds to create the device; the device is
		// persistent, the fds are ours to close.
		for _, f := range tap.Fds {
			f.Close()
		}
		return nil
	})
	if err != nil {
		t.Fatalf("add tap %s in %s: %v", name, ns.Name, err)
	}
	l := ns.link(t, name)
	if bridge != "" {
		if err := ns.nl.LinkSetMaster(l, ns.link(t, bridge)); err != nil {
			t.Fatalf("enslave %s to %s: %v", name, bridge, err)
		}
	}
	ns.up(t, l)
	return name
}

// VethToRoot connects the namespace's bridge to the root namespace with a
// veth pair (to reach a libvirt guest on a root-namespace bridge). It
// returns the root-side name, up and not enslaved; the pair is deleted at
// cleanup.
func (ns *NetNS) VethToRoot(t T, bridge string) string {
	t.Helper()
	root, inner := IfName("ibvr"), IfName("ibvn")
	la := netlink.NewLinkAttrs()
	la.Name = root
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: inner}); err != nil {
		t.Fatalf("add veth %s/%s: %v", root, inner, err)
	}
	unmark := mark("link", root)
	t.Cleanup(func() {
		if l, err := netlink.LinkByName(root); err == nil {
			_ = netlink.LinkDel(l)
		}
		unmark()
	})
	in, err := netlink.LinkByName(inner)
	if err == nil {
		err = netlink.LinkSetNsFd(in, int(ns.handle))
	}
	if err != nil {
		t.Fatalf("move %s into %s: %v", inner, ns.Name, err)
	}
	il := ns.link(t, inner)
	if err := ns.nl.LinkSetMaster(il, ns.link(t, bridge)); err != nil {
		t.Fatalf("enslave %s to %s: %v", inner, bridge, err)
	}
	ns.up(t, il)
	rl, err := netlink.LinkByName(root)
	if err == nil {
		err = netlink.LinkSetUp(rl)
	}
	if err != nil {
		t.Fatalf("set %s up: %v", root, err)
	}
	return root
}

// LabNet is the usual PXE lab: a namespace with a bridge that carries the
// server address.
type LabNet struct {
	NS     *NetNS
	Bridge string
	Addr   netip.Prefix // the bridge's address with the subnet length, e.g. 10.77.0.1/24
}

// NewLabNet builds a namespace with a bridge addressed addr (for example
// "10.77.0.1/24"; empty picks 10.x.y.1/24 at random). Requires root.
func NewLabNet(t T, addr string) *LabNet {
	t.Helper()
	if addr == "" {
		var b [2]byte
		_, _ = rand.Read(b[:])
		addr = fmt.Sprintf("10.%d.%d.1/24", 100+b[0]%100, b[1])
	}
	p, err := netip.ParsePrefix(addr)
	if err != nil {
		t.Fatalf("lab net address %q: %v", addr, err)
	}
	ns := NewNetNS(t)
	return &LabNet{NS: ns, Bridge: ns.Bridge(t, p), Addr: p}
}

func writeFile(path, s string) error { return os.WriteFile(path, []byte(s), 0o644) }

// Link connects another namespace to this one's bridge with a veth pair
// and returns the name of the end inside other (up, no address). Use it
// to put a client (a load generator, a second host) behind the bridge, so
// its traffic really crosses the link instead of the local loopback.
func (ns *NetNS) Link(t T, bridge string, other *NetNS) string {
	t.Helper()
	a, b := IfName("ibla"), IfName("iblb")
	la := netlink.NewLinkAttrs()
	la.Name = a
	if err := ns.nl.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: b}); err != nil {
		t.Fatalf("add veth %s/%s in %s: %v", a, b, ns.Name, err)
	}
	if err := ns.nl.LinkSetNsFd(ns.link(t, b), int(other.handle)); err != nil {
		t.Fatalf("move %s into %s: %v", b, other.Name, err)
	}
	ns.noDAD(t, a)
	other.noDAD(t, b)
	al := ns.link(t, a)
	if err := ns.nl.LinkSetMaster(al, ns.link(t, bridge)); err != nil {
		t.Fatalf("enslave %s to %s: %v", a, bridge, err)
	}
	ns.up(t, al)
	other.up(t, other.link(t, b))
	return b
}

// markDir records what the lab created and which process did, so that
// what a killed test binary left behind (t.Cleanup does not run after a
// test timeout panic or a SIGKILL) is removed by the next lab test.
const markDir = "/run/ironbark-lab/net"

// mark records a namespace or root-namespace link created by this
// process; the returned function forgets it after a normal cleanup.
func mark(kind, name string) (unmark func()) {
	path := filepath.Join(markDir, kind+"."+name)
	if os.MkdirAll(markDir, 0o755) != nil || os.WriteFile(path, []byte(strconv.Itoa(os.Getpid())), 0o644) != nil {
		return func() {}
	}
	return func() { os.Remove(path) }
}

// reapStale removes namespaces (killing the processes left inside them)
// and root-namespace links recorded by processes that no longer exist.
// Only what this kit marked is touched.
func reapStale(t T) {
	entries, err := os.ReadDir(markDir)
	if err != nil {
		return
	}
	for _, e := range entries {
		path := filepath.Join(markDir, e.Name())
		b, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid <= 0 {
			continue
		}
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
			continue // its creator is alive
		}
		kind, name, ok := strings.Cut(e.Name(), ".")
		if !ok {
			continue
		}
		switch kind {
		default:
			continue // not ours
		case "netns":
			if out, err := exec.Command("ip", "netns", "pids", name).Output(); err == nil {
				for _, f := range strings.Fields(string(out)) {
					if p, err := strconv.Atoi(f); err == nil {
						_ = syscall.Kill(p, syscall.SIGKILL)
					}
				}
			}
			_ = netns.DeleteNamed(name)
		case "link":
			if l, err := netlink.LinkByName(name); err == nil {
				_ = netlink.LinkDel(l)
			}
		}
		os.Remove(path)
		t.Logf("removed %s %s left by dead process %d", kind, name, pid)
	}
}
