package nodeagent

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"ironbark/controller/cluster"
	"ironbark/internal/nodeapi"
)

// TestCapacityAfterSlowHypervisor is an installed Xen node's boot: the
// agent starts before libvirt's driver answers (first not at all, then
// with no cores and no memory). It waits for the hypervisor, enrolls
// without a capacity when it stays silent, never reports the silence as
// a host with nothing, and reports the real capacity as soon as it comes:
// the controller takes that first report as what the node enrolled with.
func TestCapacityAfterSlowHypervisor(t *testing.T) {
	r := newRig(t)
	var stage atomic.Int32 // 0: no answer, 1: an answer with nothing, 2: the host
	var asked atomic.Int32
	a, err := New(Config{Controller: r.ctl.URL, Token: r.token, LibvirtURI: "test:///default", StateDir: r.state,
		Logger: testLogger(t), StopTimeout: time.Second, HypervisorGrace: 300 * time.Millisecond, Hostname: "node-slow"})
	if err != nil {
		t.Fatal(err)
	}
	a.nodeInfo = func() (int, int, error) {
		asked.Add(1)
		switch stage.Load() {
		case 0:
			return 0, 0, errHypervisor
		case 1:
			return 0, 0, nil
		}
		return 4, 4096, nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	n := waitNode(t, r, func(n cluster.Node) bool { return true })
	if asked.Load() < 2 {
		t.Fatalf("asked the hypervisor %d times before enrolling, want it retried", asked.Load())
	}
	if n.Capacity != (nodeapi.Capacity{}) || n.Declared != (nodeapi.Capacity{}) {
		t.Fatalf("enrolled with %+v (declared %+v), want no capacity", n.Capacity, n.Declared)
	}
	// Heartbeats go on while the hypervisor answers with nothing; the node
	// still declares nothing.
	stage.Store(1)
	before := n.LastHeartbeat
	n = waitNode(t, r, func(n cluster.Node) bool { return n.LastHeartbeat.After(before) })
	if n.Declared != (nodeapi.Capacity{}) || n.Capacity.Cores != 0 {
		t.Fatalf("after an answer with no cores: %+v declared %+v", n.Capacity, n.Declared)
	}
	stage.Store(2)
	n = waitNode(t, r, func(n cluster.Node) bool { return n.Capacity.Cores == 4 })
	if n.Capacity.MemoryMiB != 4096 || n.Approved.Cores != 4 || n.Approved.MemoryMiB != 4096 || n.Pending() || n.Reviewed {
		t.Fatalf("after the hypervisor answered: %+v", n)
	}
}

// waitNode waits until the rig's only node satisfies ok.
func waitNode(t *testing.T, r *rig, ok func(cluster.Node) bool) cluster.Node {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		nodes, err := r.ctl.Nodes(context.Background(), "zone-a")
		if err != nil {
			t.Fatal(err)
		}
		if len(nodes) == 1 && ok(nodes[0]) {
			return nodes[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("node never got there: %+v", nodes)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A failed Xen start says what libxl logged, not only that it failed.
func TestLibxlErrors(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "i-1.log")
	if err := os.WriteFile(log, []byte("libxl: debug: starting\n"+
		"libxl: error: libxl_aoutils.c:539:hotplug_timeout: timed out waiting for script /etc/xen/scripts/block add\n"+
		"libxl: debug: done\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := libxlErrors(log); !strings.Contains(got, "hotplug_timeout") || strings.Contains(got, "debug") {
		t.Fatalf("libxlErrors: %q", got)
	}
	if got := libxlErrors(filepath.Join(dir, "none.log")); got != "" {
		t.Fatalf("no log: %q", got)
	}
}
