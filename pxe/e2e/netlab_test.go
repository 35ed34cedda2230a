package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// labNet is a network namespace with a bridge; VMs join it with taps.
type labNet struct {
	NS     string
	Bridge string
	Addr   string // bridge address, e.g. 10.213.7.1
	Prefix int
	taps   int
}

func run(t testing.TB, name string, args ...string) {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
}

// newLabNet makes namespace + bridge and removes them when the test ends
// (deleting the namespace deletes its bridge and taps).
func newLabNet(t testing.TB) *labNet {
	t.Helper()
	id := os.Getpid() % 100000
	n := &labNet{NS: fmt.Sprintf("ibpxe%d", id), Bridge: "br0", Addr: fmt.Sprintf("10.213.%d.1", id%250), Prefix: 24}
	_ = exec.Command("ip", "netns", "del", n.NS).Run()
	run(t, "ip", "netns", "add", n.NS)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", n.NS).CombinedOutput(); err != nil {
			t.Logf("ip netns del %s: %v: %s", n.NS, err, out)
		}
	})
	n.ip(t, "link", "set", "lo", "up")
	n.ip(t, "link", "add", n.Bridge, "type", "bridge")
	n.ip(t, "addr", "add", fmt.Sprintf("%s/%d", n.Addr, n.Prefix), "dev", n.Bridge)
	n.ip(t, "link", "set", n.Bridge, "up")
	return n
}

func (n *labNet) ip(t testing.TB, args ...string) {
	t.Helper()
	run(t, "ip", append([]string{"-n", n.NS}, args...)...)
}

// Tap adds a tap enslaved to the bridge.
func (n *labNet) Tap(t testing.TB) string {
	t.Helper()
	n.taps++
	name := fmt.Sprintf("tap%d", n.taps)
	n.ip(t, "tuntap", "add", "dev", name, "mode", "tap")
	n.ip(t, "link", "set", name, "master", n.Bridge)
	n.ip(t, "link", "set", name, "up")
	return name
}

// Command runs a command inside the namespace.
func (n *labNet) Command(name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", n.NS, name}, args...)...)
}
