// Package clustertest is test support for the cluster side and the node
// agent: an in-memory instance ledger that behaves like the EC2 side's (an
// instance leaves a node's desired list once the node reports it
// terminated), and a running cluster.Service on a loopback mTLS listener.
package clustertest

import (
	"context"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"ironbark/controller"
	"ironbark/controller/cluster"
	"ironbark/internal/nodeapi"
	"ironbark/internal/store/storetest"
)

// Ledger is an in-memory cluster.InstanceLedger.
type Ledger struct {
	mu      sync.Mutex
	recs    map[string]*rec
	changed func(nodeID string)
}

type rec struct {
	node    string
	spec    nodeapi.InstanceSpec
	status  nodeapi.InstanceStatus
	console []byte
}

// NewLedger returns an empty ledger.
func NewLedger() *Ledger { return &Ledger{recs: map[string]*rec{}} }

// OnChange is called after every change of desired state (Service.Notify).
func (l *Ledger) OnChange(fn func(nodeID string)) {
	l.mu.Lock()
	l.changed = fn
	l.mu.Unlock()
}

func (l *Ledger) notify(node string) {
	l.mu.Lock()
	fn := l.changed
	l.mu.Unlock()
	if fn != nil {
		fn(node)
	}
}

// Launch places an instance on a node, desired running.
func (l *Ledger) Launch(node string, s nodeapi.InstanceSpec) {
	s.Desired = nodeapi.StateRunning
	l.mu.Lock()
	l.recs[s.InstanceID] = &rec{node: node, spec: s, status: nodeapi.InstanceStatus{InstanceID: s.InstanceID, State: nodeapi.StatePending}}
	l.mu.Unlock()
	l.notify(node)
}

// SetDesired changes an instance's desired state (running, stopped,
// terminated).
func (l *Ledger) SetDesired(id, desired string) {
	l.mu.Lock()
	r := l.recs[id]
	r.spec.Desired = desired
	l.mu.Unlock()
	l.notify(r.node)
}

// Reboot bumps the reboot serial.
func (l *Ledger) Reboot(id string) {
	l.mu.Lock()
	r := l.recs[id]
	r.spec.RebootSerial++
	l.mu.Unlock()
	l.notify(r.node)
}

// Status is the last reported state and the console tail last sent.
func (l *Ledger) Status(id string) (nodeapi.InstanceStatus, []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := l.recs[id]
	if r == nil {
		return nodeapi.InstanceStatus{}, nil
	}
	return r.status, r.console
}

// Wait polls until cond holds for the instance's status, or fails the test
// after timeout (a guard against hangs, not a timing assertion).
func (l *Ledger) Wait(t testing.TB, id string, timeout time.Duration, what string, cond func(nodeapi.InstanceStatus, []byte) bool) nodeapi.InstanceStatus {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		st, con := l.Status(id)
		if cond(st, con) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s not reached within %s; last status %+v", id, what, timeout, st)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// WaitState waits for the instance to reach state.
func (l *Ledger) WaitState(t testing.TB, id, state string, timeout time.Duration) nodeapi.InstanceStatus {
	t.Helper()
	return l.Wait(t, id, timeout, state, func(s nodeapi.InstanceStatus, _ []byte) bool { return s.State == state })
}

// DesiredOnNode lists the node's instances that it has not yet reported
// terminated.
func (l *Ledger) DesiredOnNode(_ context.Context, node string) ([]nodeapi.InstanceSpec, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []nodeapi.InstanceSpec
	for _, r := range l.recs {
		if r.node == node && r.status.State != nodeapi.StateTerminated {
			out = append(out, r.spec)
		}
	}
	return out, nil
}

// Observe records a node's report.
func (l *Ledger) Observe(_ context.Context, node string, sts []nodeapi.InstanceStatus) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, st := range sts {
		r := l.recs[st.InstanceID]
		if r == nil || r.node != node {
			continue
		}
		if len(st.ConsoleTail) > 0 {
			r.console = st.ConsoleTail
		}
		st.ConsoleTail = nil
		// As the controller's ledger does: a report without a reason (the
		// agent's "gone" line after it removed a failed instance) keeps
		// the reason the node gave before.
		if st.Reason == "" {
			st.Reason = r.status.Reason
		}
		r.status = st
	}
	return nil
}

// Usage sums the VM types of instances not terminated.
func (l *Ledger) Usage(context.Context) (controller.NodeUsages, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]nodeapi.NodeUsage{}
	for _, r := range l.recs {
		if r.status.State == nodeapi.StateTerminated {
			continue
		}
		u := out[r.node]
		u.Cores += r.spec.VMType.Cores
		u.MemoryMiB += r.spec.VMType.MemoryMiB
		u.DiskGiB += r.spec.VMType.DiskGiB
		u.Instances++
		out[r.node] = u
	}
	return controller.UsageOf(out), nil
}

// Controller is a running cluster service for tests.
type Controller struct {
	*cluster.Service
	URL    string // https://127.0.0.1:PORT
	Ledger *Ledger
	Config cluster.Config // as started, with DB and DataDir filled in
	stop   func()
}

// Start runs a cluster.Service on SQLite with the ledger on a loopback
// listener until the test ends (or Stop). cfg.Blobs, when set, is served at
// /v1/blobs/.
func Start(t testing.TB, l *Ledger, cfg cluster.Config) *Controller {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return StartOn(t, l, cfg, ln)
}

// StartOn is Start on a given listener: a controller restarted on the
// same address, store and data dir is the same controller to its nodes.
func StartOn(t testing.TB, l *Ledger, cfg cluster.Config, ln net.Listener) *Controller {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	if cfg.DB == nil {
		cfg.DB = storetest.SQLite(t, nil)
	}
	if cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	cfg.Ledger = l
	s, err := cluster.New(ctx, cfg)
	if err != nil {
		cancel()
		ln.Close()
		t.Fatal(err)
	}
	l.OnChange(s.Notify)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = s.Serve(ctx, ln) }()
	go func() { defer wg.Done(); _ = s.Run(ctx) }()
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); wg.Wait() }) }
	t.Cleanup(stop)
	return &Controller{Service: s, URL: "https://" + ln.Addr().String(), Ledger: l, Config: cfg, stop: stop}
}

// Stop shuts the controller down (its listener closes).
func (c *Controller) Stop() { c.stop() }

// Token adds the cluster (if new) and returns an enrollment token for it.
func (c *Controller) Token(t testing.TB, clusterName string) string {
	t.Helper()
	ctx := context.Background()
	if _, err := c.Cluster(ctx, clusterName); err != nil {
		if err := c.AddCluster(ctx, clusterName, "GREEDY"); err != nil {
			t.Fatal(err)
		}
	}
	tok, err := c.NewToken(ctx, c.CA(), clusterName, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}
