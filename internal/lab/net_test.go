package lab

import (
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestLabNet(t *testing.T) {
	Require(t, "ip")
	var nsName, rootVeth string
	t.Run("build", func(t *testing.T) {
		ln := NewLabNet(t, "")
		nsName = ln.NS.Name
		a, b := ln.NS.Veth(t, ln.Bridge)
		tap := ln.NS.Tap(t, ln.Bridge)
		rootVeth = ln.NS.VethToRoot(t, ln.Bridge)
		other := NewNetNS(t)
		far := ln.NS.Link(t, ln.Bridge, other)
		other.AddAddr(t, far, netip.PrefixFrom(ln.Addr.Addr().Next(), ln.Addr.Bits()))
		// The far namespace reaches the bridge address over the link.
		var srv net.PacketConn
		if err := ln.NS.Do(func() (err error) {
			srv, err = net.ListenPacket("udp4", ln.Addr.Addr().String()+":0")
			return err
		}); err != nil {
			t.Fatal(err)
		}
		defer srv.Close()
		if err := other.Do(func() error {
			c, err := net.Dial("udp4", srv.LocalAddr().String())
			if err != nil {
				return err
			}
			defer c.Close()
			_, err = c.Write([]byte("hi"))
			return err
		}); err != nil {
			t.Fatal(err)
		}
		srv.SetReadDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, 8)
		if n, from, err := srv.ReadFrom(buf); err != nil || string(buf[:n]) != "hi" {
			t.Fatalf("across the link: %q from %v: %v", buf[:n], from, err)
		}
		for _, n := range []string{ln.Bridge, a, b, tap, ln.NS.Name, rootVeth} {
			if len(n) > 15 {
				t.Errorf("name %q longer than 15", n)
			}
		}
		// The bridge address is visible inside the namespace only.
		var addrs []string
		if err := ln.NS.Do(func() error {
			ifi, err := net.InterfaceByName(ln.Bridge)
			if err != nil {
				return err
			}
			as, err := ifi.Addrs()
			for _, a := range as {
				addrs = append(addrs, a.String())
			}
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(strings.Join(addrs, " "), ln.Addr.String()) {
			t.Fatalf("bridge addresses %v, want %s", addrs, ln.Addr)
		}
		if _, err := net.InterfaceByName(ln.Bridge); err == nil {
			t.Fatal("bridge visible in the root namespace")
		}
		out, err := ln.NS.Command(t.Context(), "ip", "-o", "link").CombinedOutput()
		if err != nil || !strings.Contains(string(out), tap) {
			t.Fatalf("ip link in ns: %v\n%s", err, out)
		}
		var dad string
		_ = ln.NS.Do(func() error {
			b, err := os.ReadFile("/proc/sys/net/ipv6/conf/" + ln.Bridge + "/accept_dad")
			dad = strings.TrimSpace(string(b))
			return err
		})
		if dad != "0" {
			t.Errorf("accept_dad on bridge = %q", dad)
		}
		p := ln.NS.Start(t, "sleep", "600")
		if p.Cmd.Process == nil {
			t.Fatal("no process")
		}
	})
	if _, err := os.Stat("/run/netns/" + nsName); !os.IsNotExist(err) {
		t.Fatalf("netns %s left behind: %v", nsName, err)
	}
	if _, err := net.InterfaceByName(rootVeth); err == nil {
		t.Fatalf("root veth %s left behind", rootVeth)
	}
}

// TestReapStale: what a dead test binary left behind (here: a namespace
// with a process in it, marked with a pid that no longer exists) is
// removed by the next lab test.
func TestReapStale(t *testing.T) {
	Require(t, "ip", "sleep")
	name := IfName("ibns")
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v\n%s", err, out)
	}
	sleeper := exec.Command("ip", "netns", "exec", name, "sleep", "600")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- sleeper.Wait() }()
	defer func() { _ = sleeper.Process.Kill() }()
	// `ip netns exec` enters the namespace after Start returns: until
	// it has, the namespace holds no process for the reaper to kill.
	inNS := func() bool {
		out, _ := exec.Command("ip", "netns", "pids", name).Output()
		return slices.Contains(strings.Fields(string(out)), strconv.Itoa(sleeper.Process.Pid))
	}
	for deadline := time.Now().Add(30 * time.Second); !inNS(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the sleeper never entered the namespace")
		}
	}
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(markDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(markDir, "netns."+name), []byte(strconv.Itoa(dead.Process.Pid)), 0o644); err != nil {
		t.Fatal(err)
	}
	NewNetNS(t)
	if _, err := os.Stat("/run/netns/" + name); !os.IsNotExist(err) {
		exec.Command("ip", "netns", "del", name).Run()
		t.Fatalf("stale netns %s not removed: %v", name, err)
	}
	select {
	case err := <-exited:
		if err == nil {
			t.Fatal("process in the stale namespace exited by itself, not killed")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("process in the stale namespace was not killed")
	}
}

// TestTaggedARP: a host behind the bridge answers an untagged ARP request
// (its reply seen untagged), and not one tagged with a VLAN it is not on.
func TestTaggedARP(t *testing.T) {
	Require(t, "ip")
	ln := NewLabNet(t, "")
	other := NewNetNS(t)
	far := ln.NS.Link(t, ln.Bridge, other)
	peer := ln.Addr.Addr().Next()
	other.AddAddr(t, far, netip.PrefixFrom(peer, ln.Addr.Bits()))
	tags, err := ln.NS.TaggedARP(ln.Bridge, 0, ln.Addr.Addr(), peer, time.Second)
	if err != nil || len(tags) != 1 || tags[0] != 0 {
		t.Fatalf("untagged: replies %v (%v), want one untagged", tags, err)
	}
	tags, err = ln.NS.TaggedARP(ln.Bridge, 42, ln.Addr.Addr(), peer, time.Second)
	if err != nil || len(tags) != 0 {
		t.Fatalf("VLAN 42: replies %v (%v), want none", tags, err)
	}
}
