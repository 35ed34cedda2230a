// Package simnode runs simulated node agents for tests and benchmarks at
// sizes no lab has: each one enrolls with a one-time token and a key of
// its own through the real node API client (internal/nodeapi), heartbeats
// at the interval the controller gives, follows its desired instances as
// the agent does, and "launches" what appears there by reporting it running
// (no hypervisor, nothing boots), terminating what is desired terminated.
// It counts what it did so a test can check that every launch reached
// exactly one node once and every heartbeat was answered.
package simnode

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"ironbark/internal/nodeapi"
	"ironbark/internal/pki"
	"ironbark/internal/retry"
)

// Config is one simulated node.
type Config struct {
	Controller string // node API URL, https://HOST:PORT
	Token      string // one-time enrollment token
	Hostname   string
	Capacity   nodeapi.Capacity
	// LocalIP is the address the node's connections come from ("" for
	// any): many nodes on one machine each take a loopback address of
	// their own (127.x.y.z), as real nodes have addresses of their own.
	LocalIP string
	// Wait is how long a request for the desired instances waits or streams
	// (default 25 s, the agent's).
	Wait time.Duration
	// NoStream has the node ask for one answer per request, as agents
	// before streamed answers did (nodeapi.Client.InstancesStream).
	NoStream bool
	// WholeMembers has the node hold nothing, as agents before member-list
	// deltas and spec versions: every answer carries whole lists and
	// every spec.
	WholeMembers bool
	// OnMembers, when set, is told the member addresses each answer's
	// deltas added to the node's lists, and when the answer arrived: how
	// a benchmark times a launch's address reaching its peers' nodes.
	OnMembers func(added []string, at time.Time)
	// MemberSteps, when set, is shared by the nodes of the process
	// (nodeapi.MemberSteps): each launch's delta to a member list is then
	// applied once, not once per node that holds the list.
	MemberSteps *nodeapi.MemberSteps
}

// Stats are what a node did, counted since it started.
type Stats struct {
	Heartbeats      int64 // answered by the controller
	HeartbeatErrors int64 // failed (network, or the controller said no)
	Polls           int64 // desired-instance answers received
	PollErrors      int64
	Launches        int64 // instances started (first seen desired running)
	Relaunches      int64 // an instance started again after it was started: must stay 0
	Terminations    int64
	LastError       string // the last heartbeat or poll failure, for the report
	// MemberResyncs counts answers whose member-list deltas or kept
	// specs did not apply (the node asked again for whole ones): must
	// stay 0.
	MemberResyncs int64
	// DesiredBytes, DesiredMembers and DesiredSpecs are what the
	// desired-state answers carried: body bytes, member addresses (whole
	// lists and deltas), and instance specs sent whole.
	DesiredBytes, DesiredMembers, DesiredSpecs int64
}

// Node is an enrolled simulated node.
type Node struct {
	cfg    Config
	id     string
	client *nodeapi.Client

	hb                                                 atomic.Int64
	hbErr, polls, pollErr, launches, relaunches, terms atomic.Int64
	resyncs                                            atomic.Int64

	kick    chan struct{}
	lastErr atomic.Value // string

	mu       sync.Mutex
	insts    map[string]*inst
	received map[string]time.Time // instance -> when its launch arrived
	lastHB   time.Time            // when the last heartbeat was answered
}

type inst struct {
	state    string
	reported bool // terminated and reported: forget once no longer desired
}

// Enroll makes the node's key, has the controller sign it with the token,
// and returns the node ready to Run.
func Enroll(ctx context.Context, cfg Config) (*Node, error) {
	if cfg.Wait <= 0 {
		cfg.Wait = 25 * time.Second
	}
	_, fp, err := nodeapi.ParseToken(cfg.Token)
	if err != nil {
		return nil, err
	}
	key, err := pki.NewKey()
	if err != nil {
		return nil, err
	}
	csr, err := pki.CSR(key, cfg.Hostname)
	if err != nil {
		return nil, err
	}
	var local net.Addr
	if cfg.LocalIP != "" {
		ip := net.ParseIP(cfg.LocalIP)
		if ip == nil {
			return nil, fmt.Errorf("simnode %s: bad local address %q", cfg.Hostname, cfg.LocalIP)
		}
		local = &net.TCPAddr{IP: ip}
	}
	ec := nodeapi.NewClientFrom(cfg.Controller, pki.PinnedTLS(fp), local)
	var resp nodeapi.EnrollResponse
	// As the agent does, a refusal (4xx) is final and anything else
	// (a controller restarting, a balancer between two) is retried.
	err = retry.Do(ctx, retry.Policy{Attempts: 6, Wait: 200 * time.Millisecond, MaxWait: 3 * time.Second,
		Retryable: func(err error) bool {
			var se *nodeapi.StatusError
			return !errors.As(err, &se) || se.Code/100 != 4
		}}, func(int) error {
		resp, err = ec.Enroll(ctx, nodeapi.EnrollRequest{Token: cfg.Token, Hostname: cfg.Hostname, CSR: string(csr),
			Capacity: cfg.Capacity, MACs: []string{fakeMAC(cfg.Hostname)}})
		return err
	})
	ec.Close()
	if err != nil {
		return nil, fmt.Errorf("simnode %s: enroll: %w", cfg.Hostname, err)
	}
	kp, err := pki.KeyPEM(key)
	if err != nil {
		return nil, err
	}
	cert, err := tls.X509KeyPair([]byte(resp.Certificate), kp)
	if err != nil {
		return nil, fmt.Errorf("simnode %s: certificate: %w", cfg.Hostname, err)
	}
	tc, err := pki.ClientTLS(cert, []byte(resp.CA))
	if err != nil {
		return nil, err
	}
	return &Node{cfg: cfg, id: resp.NodeID, client: nodeapi.NewClientFrom(cfg.Controller, tc, local),
		kick: make(chan struct{}, 1), insts: map[string]*inst{}, received: map[string]time.Time{}}, nil
}

// fakeMAC is a locally administered MAC derived from the host name.
func fakeMAC(host string) string {
	var h uint32 = 2166136261
	for i := 0; i < len(host); i++ {
		h = (h ^ uint32(host[i])) * 16777619
	}
	return fmt.Sprintf("02:5e:%02x:%02x:%02x:%02x", byte(h>>24), byte(h>>16), byte(h>>8), byte(h))
}

// ID is the node ID the controller gave.
func (n *Node) ID() string { return n.id }

// Hostname is the name the node enrolled with.
func (n *Node) Hostname() string { return n.cfg.Hostname }

// Run heartbeats and follows the desired instances until ctx ends.
func (n *Node) Run(ctx context.Context) {
	defer n.client.Close()
	var wg sync.WaitGroup
	wg.Go(func() { n.follow(ctx) })
	n.heartbeats(ctx)
	wg.Wait()
}

func (n *Node) heartbeats(ctx context.Context) {
	interval := 10 * time.Second
	// Real nodes boot at different times: a random phase keeps a fleet
	// started at once from heartbeating in lock step.
	first := time.NewTimer(time.Duration(rand.Int64N(int64(time.Second))))
	select {
	case <-ctx.Done():
		first.Stop()
		return
	case <-first.C:
	}
	for ctx.Err() == nil {
		if iv, err := n.heartbeat(ctx); err != nil {
			if ctx.Err() == nil {
				n.hbErr.Add(1)
				n.lastErr.Store("heartbeat: " + err.Error())
			}
		} else if iv > 0 {
			interval = iv
		}
		t := time.NewTimer(interval)
		select {
		case <-ctx.Done():
		case <-t.C:
		case <-n.kick:
			// As the agent does: a burst of state changes is one report.
			t2 := time.NewTimer(25 * time.Millisecond)
			select {
			case <-ctx.Done():
			case <-t2.C:
			}
			t2.Stop()
		}
		t.Stop()
	}
}

func (n *Node) heartbeat(ctx context.Context) (time.Duration, error) {
	n.mu.Lock()
	req := nodeapi.HeartbeatRequest{Hostname: n.cfg.Hostname, Capacity: n.cfg.Capacity, Hypervisor: "sim:///", Full: true}
	ids := make([]string, 0, len(n.insts))
	for id := range n.insts {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	var terminated []string
	for _, id := range ids {
		in := n.insts[id]
		req.Instances = append(req.Instances, nodeapi.InstanceStatus{InstanceID: id, State: in.state})
		if in.state == nodeapi.StateTerminated {
			terminated = append(terminated, id)
		}
	}
	n.mu.Unlock()
	resp, err := n.client.Heartbeat(ctx, req)
	if err != nil {
		return 0, err
	}
	n.hb.Add(1)
	n.mu.Lock()
	n.lastHB = time.Now()
	for _, id := range terminated {
		if in := n.insts[id]; in != nil {
			in.reported = true
		}
	}
	n.mu.Unlock()
	return time.Duration(resp.IntervalSeconds) * time.Second, nil
}

func (n *Node) follow(ctx context.Context) {
	etag := ""
	var held *nodeapi.Held
	if !n.cfg.WholeMembers {
		held = &nodeapi.Held{Members: nodeapi.HeldMembers{Steps: n.cfg.MemberSteps}}
	}
	got := func(d nodeapi.Desired) error {
		n.polls.Add(1)
		if n.cfg.OnMembers != nil {
			now := time.Now()
			for _, g := range d.SecurityGroups {
				if g.MembersDelta != nil && len(g.MembersDelta.Added) > 0 {
					n.cfg.OnMembers(g.MembersDelta.Added, now)
				}
			}
		}
		if d.ETag == etag && etag != "" {
			return nil
		}
		etag = d.ETag
		if n.apply(d.Instances) {
			select {
			case n.kick <- struct{}{}:
			default:
			}
		}
		return nil
	}
	for ctx.Err() == nil {
		var err error
		if n.cfg.NoStream {
			var d nodeapi.Desired
			if d, err = n.client.InstancesHeld(ctx, etag, n.cfg.Wait, held); err == nil {
				err = got(d)
			}
		} else {
			err = n.client.InstancesStream(ctx, etag, n.cfg.Wait, held, got)
		}
		if errors.Is(err, nodeapi.ErrMembersBase) || errors.Is(err, nodeapi.ErrSpecsBase) {
			// A delta that did not give the list the controller named,
			// or a kept spec not held: whole ones again, as the agent
			// does; counted, as it must not happen.
			n.resyncs.Add(1)
			n.lastErr.Store("instances: " + err.Error())
			etag = ""
			continue
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			n.pollErr.Add(1)
			n.lastErr.Store("instances: " + err.Error())
			sleep(ctx, 500*time.Millisecond)
		}
	}
}

// apply acts on the desired instances as the agent's reconcile would, at
// once; it reports whether any state changed.
func (n *Node) apply(specs []nodeapi.InstanceSpec) bool {
	now := time.Now()
	n.mu.Lock()
	defer n.mu.Unlock()
	changed := false
	desired := make(map[string]bool, len(specs))
	for _, s := range specs {
		desired[s.InstanceID] = true
		in := n.insts[s.InstanceID]
		switch s.Desired {
		case nodeapi.StateRunning:
			if in == nil {
				if _, seen := n.received[s.InstanceID]; seen {
					n.relaunches.Add(1)
				} else {
					n.received[s.InstanceID] = now
				}
				n.insts[s.InstanceID] = &inst{state: nodeapi.StateRunning}
				n.launches.Add(1)
				changed = true
			}
		case nodeapi.StateStopped:
			if in != nil && in.state != nodeapi.StateStopped {
				in.state, changed = nodeapi.StateStopped, true
			}
		case nodeapi.StateTerminated:
			if in == nil {
				if _, seen := n.received[s.InstanceID]; !seen {
					n.received[s.InstanceID] = now // terminated before it ran here
				}
				in = &inst{state: nodeapi.StatePending}
				n.insts[s.InstanceID] = in
			}
			if in.state != nodeapi.StateTerminated {
				in.state, changed = nodeapi.StateTerminated, true
				n.terms.Add(1)
			}
		}
	}
	for id, in := range n.insts {
		if !desired[id] && in.reported {
			delete(n.insts, id)
		}
	}
	return changed
}

// Stats returns the node's counters.
func (n *Node) Stats() Stats {
	st := Stats{Heartbeats: n.hb.Load(), HeartbeatErrors: n.hbErr.Load(), Polls: n.polls.Load(), PollErrors: n.pollErr.Load(),
		Launches: n.launches.Load(), Relaunches: n.relaunches.Load(), Terminations: n.terms.Load()}
	st.DesiredBytes, st.DesiredMembers, st.DesiredSpecs = n.client.DesiredSent()
	st.MemberResyncs = n.resyncs.Load()
	if e, ok := n.lastErr.Load().(string); ok {
		st.LastError = e
	}
	return st
}

// Received returns when each instance's launch reached the node.
func (n *Node) Received() map[string]time.Time {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make(map[string]time.Time, len(n.received))
	for id, t := range n.received {
		out[id] = t
	}
	return out
}

// LastHeartbeat is when the controller last answered a heartbeat.
func (n *Node) LastHeartbeat() time.Time {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.lastHB
}

// Sum adds up the stats of many nodes.
func Sum(nodes []*Node) Stats {
	var s Stats
	for _, n := range nodes {
		t := n.Stats()
		s.Heartbeats += t.Heartbeats
		s.HeartbeatErrors += t.HeartbeatErrors
		s.Polls += t.Polls
		s.PollErrors += t.PollErrors
		s.Launches += t.Launches
		s.Relaunches += t.Relaunches
		s.Terminations += t.Terminations
		s.MemberResyncs += t.MemberResyncs
		s.DesiredBytes += t.DesiredBytes
		s.DesiredMembers += t.DesiredMembers
		s.DesiredSpecs += t.DesiredSpecs
		if t.LastError != "" {
			s.LastError = t.LastError
		}
	}
	return s
}

// LoopbackIP is the i-th node's own loopback address (127.1.0.0 up), so
// per-address connection caps see each simulated node as the machine it
// stands for.
func LoopbackIP(i int) string {
	if i < 0 || i >= 1<<22 {
		return ""
	}
	return fmt.Sprintf("127.%d.%d.%d", 1+i>>16, (i>>8)&0xff, i&0xff)
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
