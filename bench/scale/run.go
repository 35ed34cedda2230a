package scale

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	sdk "github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"ironbark/controller"
	"ironbark/controller/ec2/ec2test"
	"ironbark/internal/nodeapi"
	"ironbark/internal/schedwait"
	"ironbark/internal/simnode"
)

// Size is one point of the curve.
type Size struct{ Nodes, Instances int }

func (s Size) String() string { return fmt.Sprintf("%d nodes, %d instances", s.Nodes, s.Instances) }

// Options are one run: one controller, one store, one size.
type Options struct {
	Binary  string // the ironbark binary
	DataDir string // an empty directory for the controller
	DB      string // "" for SQLite in DataDir, else an empty PostgreSQL database's URL
	Size    Size
	// Accounts is how many tenants share the instances (default 100).
	Accounts int
	// PerCall is the instances one RunInstances asks for (default 10);
	// Workers how many calls are in flight at once (default 8).
	PerCall, Workers int
	// Steady is how long heartbeats are counted once the launches are
	// dispatched (default 20 s: two heartbeat intervals).
	Steady time.Duration
	// DescribeCalls is how many DescribeInstances each account makes
	// (default 5).
	DescribeCalls int
	// PacedCalls RunInstances of one instance each, PacedRate a second,
	// follow the fill (defaults 200 at 20/s): the dispatch latency of a
	// cloud of the size that keeps up with its launches, where the fill's
	// is that of a controller kept saturated.
	PacedCalls int
	PacedRate  float64
	Progress   io.Writer // progress lines; nil: none
	// DebugAddr, when set, is where the controller serves its profiler.
	DebugAddr string
	// ControllerLog, when set, is a file the controller's log is written
	// to once the paced launches are done (a slow call's neighbours).
	ControllerLog string
	// WholeMembers has the nodes ask for whole member lists, as agents
	// before member-list deltas did.
	WholeMembers bool
	// NoStream has the nodes ask for one desired-state answer per
	// request, as agents before streamed answers did.
	NoStream bool
	// OwnLists has each simulated node apply every member-list delta
	// itself, as before the nodes shared them (nodeapi.MemberSteps): the
	// generator's CPU, on the controller's cores, as it was.
	OwnLists bool
	// Settle has the paced launches wait until the fill's member-list
	// updates have stopped reaching the nodes (at most SettleMax), so
	// they measure launches at their rate, not behind the fill's backlog.
	Settle bool
}

// SettleMax bounds Options.Settle's wait; settleQuiet is how long no
// member address may reach any node for the updates to count as done.
const (
	SettleMax   = 3 * time.Minute
	settleQuiet = 2 * time.Second
)

// Result is what one run measured, and what it checked.
type Result struct {
	Engine string
	Size   Size
	Enroll time.Duration // all nodes enrolled

	RunCalls       int
	RunP50, RunP99 time.Duration
	RunPerSec      float64       // instances launched per second
	LaunchCPU      time.Duration // controller CPU per instance launched (and dispatched)
	// LaunchBytes and LaunchMembers are what the nodes were sent per
	// instance launched (and dispatched): desired-state bytes, and member
	// addresses in them.
	LaunchBytes, LaunchMembers float64
	// LaunchAnswers and PacedAnswers are the desired-state answers the
	// nodes took per instance launched, in the fill and in the paced
	// launches' window (with what the fill still sent then): how many
	// times a launch woke a node.
	LaunchAnswers, PacedAnswers float64
	DescribeP50, DescribeP99    time.Duration
	DispatchP50, DispatchP99    time.Duration // RunInstances sent -> the node has the launch
	// PeerP50 and PeerP99: RunInstances sent -> a node holding the
	// instance's security group's member list has its address, over
	// every such node and address (PeerArrivals of them; none when the
	// nodes ask for whole lists).
	PeerP50, PeerP99 time.Duration
	PeerArrivals     int64
	// PacedP50 and PacedP99: RunInstances sent -> the node has the launch,
	// for the paced launches after the fill (PacedLaunched of them,
	// PacedReceived reached a node once).
	PacedP50, PacedP99       time.Duration
	PacedRunP50, PacedRunP99 time.Duration // their RunInstances calls
	// PacedAfterP50 and PacedAfterP99: the client had RunInstances'
	// answer -> the node has the launch (0 when the node had it first, as
	// PacedEarly of them did).
	PacedAfterP50, PacedAfterP99 time.Duration
	PacedEarly                   float64
	PacedLaunched, PacedReceived int
	// GenWaitP50 and GenWaitP99: how long the load generator's own
	// goroutines waited for a CPU meanwhile (internal/schedwait): its
	// simulated nodes are tens of thousands of goroutines on the cores the
	// controller uses, and a paced call's goroutine, or a node's receiving
	// one, waits behind them inside the latencies it reports.
	// CtlWaitP50 and CtlWaitP99: the controller's, read from its debug
	// listener (DebugAddr; zero without one).
	GenWaitP50, GenWaitP99 time.Duration
	CtlWaitP50, CtlWaitP99 time.Duration
	// Settled is how long after the fill's describes the member-list
	// updates took to stop (Options.Settle; 0 without it).
	Settled                   time.Duration
	HeartbeatsPerSec          float64 // answered, in the steady window
	SteadyCPU                 float64 // controller cores used in the steady window
	RSS, PeakRSS, DBSizeBytes int64

	// Correctness.
	Launched        int   // instance IDs RunInstances returned
	Received        int   // of those, how many reached a node
	Duplicates      int   // instance IDs received by more than one node
	Unknown         int   // received but never returned by RunInstances
	Relaunches      int64 // a node told to launch one instance twice
	MemberResyncs   int64 // member-list deltas that did not apply
	Heartbeats      int64 // answered in the whole run
	HeartbeatErrors int64
	PollErrors      int64
	LastError       string // a sample of the nodes' failures
	NodesUp         int    // nodes the controller lists up at the end
}

// Check says what is wrong with a run's correctness, nil when nothing.
func (r Result) Check() error {
	var errs []error
	if r.Launched != r.Size.Instances {
		errs = append(errs, fmt.Errorf("%d instances launched, want %d", r.Launched, r.Size.Instances))
	}
	if r.Received != r.Launched {
		errs = append(errs, fmt.Errorf("%d of %d launched instances reached a node", r.Received, r.Launched))
	}
	if r.Duplicates > 0 || r.Unknown > 0 || r.Relaunches > 0 {
		errs = append(errs, fmt.Errorf("launches dispatched more than once: %d on two nodes, %d unknown, %d relaunched",
			r.Duplicates, r.Unknown, r.Relaunches))
	}
	if r.MemberResyncs > 0 {
		errs = append(errs, fmt.Errorf("%d answers' member-list deltas did not give the list named (last: %s)", r.MemberResyncs, r.LastError))
	}
	if r.HeartbeatErrors > 0 || r.Heartbeats == 0 {
		errs = append(errs, fmt.Errorf("%d heartbeats answered, %d failed (last: %s)", r.Heartbeats, r.HeartbeatErrors, r.LastError))
	}
	if r.PacedReceived != r.PacedLaunched {
		errs = append(errs, fmt.Errorf("%d of %d paced launches reached exactly one node", r.PacedReceived, r.PacedLaunched))
	}
	if r.NodesUp != r.Size.Nodes {
		errs = append(errs, fmt.Errorf("%d of %d nodes up", r.NodesUp, r.Size.Nodes))
	}
	return errors.Join(errs...)
}

func (o *Options) defaults() {
	if o.Accounts <= 0 {
		o.Accounts = 100
	}
	if o.PerCall <= 0 {
		o.PerCall = 10
	}
	if o.Workers <= 0 {
		o.Workers = 8
	}
	if o.Steady <= 0 {
		o.Steady = 20 * time.Second
	}
	if o.DescribeCalls <= 0 {
		o.DescribeCalls = 5
	}
	if o.PacedCalls <= 0 {
		o.PacedCalls = 200
	}
	if o.PacedRate <= 0 {
		o.PacedRate = 20
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
}

// subnetFor is an instance subnet with room for n instances.
func subnetFor(n int) string {
	if n < 60000 {
		return "10.88.0.0/16"
	}
	return "10.64.0.0/12"
}

// Run runs one size against one controller and store.
func Run(ctx context.Context, o Options) (Result, error) {
	o.defaults()
	res := Result{Engine: "sqlite", Size: o.Size}
	if o.DB != "" {
		res.Engine = "postgres"
	}
	say := func(format string, a ...any) {
		fmt.Fprintf(o.Progress, "  [%s %s] %s\n", res.Engine, o.Size, fmt.Sprintf(format, a...))
	}
	seed, err := Prepare(ctx, o.DataDir, o.DB, o.Accounts, o.Size.Nodes, subnetFor(o.Size.Instances))
	if err != nil {
		return res, fmt.Errorf("prepare: %w", err)
	}
	// The 100 tenants stand for 100 clients but all come from 127.0.0.1:
	// under the default cap of 64 connections per client, a stall of a
	// few seconds in the paced launches (20 new calls a second) had the
	// listener refuse the next ones and the run die on a reset.
	ctl := &Controller{Binary: o.Binary, DataDir: o.DataDir, DB: o.DB, DebugAddr: o.DebugAddr, MaxConnsPerClient: 4096}
	if err := ctl.Start(ctx); err != nil {
		return res, err
	}
	defer ctl.Stop()
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()

	start := time.Now()
	// Each node starts as soon as it is enrolled, as an agent does: a
	// fleet started all at once makes the controller do a thousand TLS
	// handshakes in the same second, which no real rack does.
	var fleet sync.WaitGroup
	defer fleet.Wait()
	defer cancel()
	peers := newMemberClock()
	var steps *nodeapi.MemberSteps
	if !o.OwnLists {
		steps = &nodeapi.MemberSteps{}
	}
	nodes, err := enrollFleet(rctx, ctl.NodeURL(), seed.Tokens, simnode.Config{WholeMembers: o.WholeMembers, NoStream: o.NoStream, MemberSteps: steps}, peers.arrived, func(n *simnode.Node) { fleet.Go(func() { n.Run(rctx) }) })
	if err != nil {
		return res, fmt.Errorf("%w; controller log:\n%s", err, tail(ctl.Log(), 40))
	}
	res.Enroll = time.Since(start)
	say("%d nodes enrolled in %s", len(nodes), res.Enroll.Round(time.Millisecond))

	tenants := newTenants(ctl.EC2URL(), seed)
	cpu0, err := ctl.Usage()
	if err != nil {
		return res, err
	}
	sent0 := simnode.Sum(nodes)
	sent, calls, took, err := launchAll(rctx, tenants, seed.Image, o, peers.launched, func(launched int, since time.Duration) {
		// A run at the largest sizes takes long: progress as it goes.
		st := simnode.Sum(nodes)
		say("%d instances launched in %s (%.0f/s), %d reached their nodes; controller CPU %s",
			launched, since.Round(time.Second), float64(launched)/since.Seconds(), st.Launches, ctlCPU(ctl, cpu0))
	})
	if err != nil {
		return res, fmt.Errorf("%w; controller log:\n%s", err, tail(ctl.Log(), 40))
	}
	res.Launched, res.RunCalls = len(sent), len(calls)
	res.RunP50, res.RunP99 = percentile(calls, 50), percentile(calls, 99)
	res.RunPerSec = float64(len(sent)) / took.Seconds()
	say("%d instances launched in %s (%.0f/s)", len(sent), took.Round(time.Millisecond), res.RunPerSec)

	// Every launch must reach its node; wait for the last ones.
	deadline := time.Now().Add(2*time.Minute + time.Duration(o.Size.Instances)*time.Millisecond)
	for simnode.Sum(nodes).Launches < int64(len(sent)) && time.Now().Before(deadline) && rctx.Err() == nil {
		time.Sleep(100 * time.Millisecond)
	}
	var dispatch []time.Duration
	seen := map[string]int{}
	for _, n := range nodes {
		for id, at := range n.Received() {
			seen[id]++
			if t0, ok := sent[id]; ok && seen[id] == 1 {
				dispatch = append(dispatch, max(at.Sub(t0), 0))
			}
		}
	}
	for id, k := range seen {
		if _, ok := sent[id]; !ok {
			res.Unknown++
		} else if k > 1 {
			res.Duplicates++
		}
		if _, ok := sent[id]; ok {
			res.Received++
		}
	}
	res.DispatchP50, res.DispatchP99 = percentile(dispatch, 50), percentile(dispatch, 99)
	if cpu1, err := ctl.Usage(); err == nil && len(sent) > 0 {
		res.LaunchCPU = (cpu1.CPU - cpu0.CPU) / time.Duration(len(sent))
	}
	if sent1 := simnode.Sum(nodes); len(sent) > 0 {
		res.LaunchBytes = float64(sent1.DesiredBytes-sent0.DesiredBytes) / float64(len(sent))
		res.LaunchMembers = float64(sent1.DesiredMembers-sent0.DesiredMembers) / float64(len(sent))
		res.LaunchAnswers = float64(sent1.Polls-sent0.Polls) / float64(len(sent))
	}
	say("%d launches reached their nodes: p50 %s, p99 %s; per launch %.1f ms of controller CPU, %.1f answers to nodes with %.0f bytes and %.1f member addresses",
		res.Received, res.DispatchP50, res.DispatchP99, float64(res.LaunchCPU)/float64(time.Millisecond), res.LaunchAnswers, res.LaunchBytes, res.LaunchMembers)

	desc, err := describeAll(rctx, tenants, o.DescribeCalls)
	if err != nil {
		return res, err
	}
	res.DescribeP50, res.DescribeP99 = percentile(desc, 50), percentile(desc, 99)

	if o.Settle {
		if res.Settled, err = settle(rctx, nodes); err != nil {
			return res, err
		}
		say("member-list updates stopped %s after the describes", res.Settled.Round(time.Millisecond))
	}
	paced0 := simnode.Sum(nodes)
	gen0, ctl0 := schedwait.Read(), ctlSched(o)
	paced, pacedCalls, err := launchPaced(rctx, tenants, seed.Image, o, peers.launched)
	if err != nil {
		return res, fmt.Errorf("%w; controller log:\n%s", err, tail(ctl.Log(), 40))
	}
	deadline = time.Now().Add(time.Minute)
	for simnode.Sum(nodes).Launches < int64(len(sent)+len(paced)) && time.Now().Before(deadline) && rctx.Err() == nil {
		time.Sleep(100 * time.Millisecond)
	}
	gen1, ctl1 := schedwait.Read(), ctlSched(o)
	res.GenWaitP50, res.GenWaitP99 = gen1.Since(gen0, 50), gen1.Since(gen0, 99)
	res.CtlWaitP50, res.CtlWaitP99 = ctl1.Since(ctl0, 50), ctl1.Since(ctl0, 99)
	if len(paced) > 0 {
		res.PacedAnswers = float64(simnode.Sum(nodes).Polls-paced0.Polls) / float64(len(paced))
	}
	var pacedDispatch, pacedAfter []time.Duration
	pacedSeen := map[string]int{}
	early := 0
	for _, n := range nodes {
		for id, at := range n.Received() {
			if c, ok := paced[id]; ok {
				if pacedSeen[id]++; pacedSeen[id] == 1 {
					pacedDispatch = append(pacedDispatch, max(at.Sub(c.sent), 0))
					pacedAfter = append(pacedAfter, max(at.Sub(c.returned), 0))
					if at.Before(c.returned) {
						early++
					}
				}
			}
		}
	}
	// Which part of a dispatch is the call and which the answer to the
	// node: a launch reaches its node once its transaction commits, before
	// or after the client reads RunInstances' answer.
	if len(pacedAfter) > 0 {
		res.PacedAfterP50, res.PacedAfterP99 = percentile(pacedAfter, 50), percentile(pacedAfter, 99)
		res.PacedEarly = float64(early) / float64(len(pacedAfter))
	}
	res.PacedLaunched = len(paced)
	for _, k := range pacedSeen {
		if k == 1 {
			res.PacedReceived++
		}
	}
	res.PacedP50, res.PacedP99 = percentile(pacedDispatch, 50), percentile(pacedDispatch, 99)
	res.PacedRunP50, res.PacedRunP99 = percentile(pacedCalls, 50), percentile(pacedCalls, 99)
	// The controller's own time for them, from its request log (the
	// paced calls are its last RunInstances): what the load generator's
	// own lag adds shows beside the times its clients saw.
	if o.ControllerLog != "" {
		if err := os.WriteFile(o.ControllerLog, []byte(ctl.Log()), 0o644); err != nil {
			return res, fmt.Errorf("controller log: %w", err)
		}
	}
	ctlWaits := " (the controller's with -debug-listen)"
	if o.DebugAddr != "" {
		ctlWaits = fmt.Sprintf(", p50 %s, p99 %s in the controller", res.CtlWaitP50, res.CtlWaitP99)
	}
	served := loggedDurations(ctl.Log(), "RunInstances")
	served = served[max(len(served)-len(pacedCalls), 0):]
	say("%d paced launches (%.0f/s) reached their nodes: p50 %s, p99 %s; their RunInstances took p50 %s, p99 %s (in the controller p50 %s, p99 %s); after the client had the answer p50 %s, p99 %s (%.0f%% before); %.1f answers to nodes per launch; goroutines waited for a CPU p50 %s, p99 %s in the generator%s",
		res.PacedReceived, o.PacedRate, res.PacedP50, res.PacedP99, res.PacedRunP50, res.PacedRunP99,
		percentile(served, 50), percentile(served, 99), res.PacedAfterP50, res.PacedAfterP99, 100*res.PacedEarly, res.PacedAnswers,
		res.GenWaitP50, res.GenWaitP99, ctlWaits)

	// The steady state: every node heartbeating and following its instances, nothing
	// launched.
	u0, err := ctl.Usage()
	if err != nil {
		return res, err
	}
	h0, t0 := simnode.Sum(nodes).Heartbeats, time.Now()
	select {
	case <-rctx.Done():
		return res, rctx.Err()
	case <-time.After(o.Steady):
	}
	u1, err := ctl.Usage()
	if err != nil {
		return res, err
	}
	wall := time.Since(t0)
	res.HeartbeatsPerSec = float64(simnode.Sum(nodes).Heartbeats-h0) / wall.Seconds()
	res.SteadyCPU = (u1.CPU - u0.CPU).Seconds() / wall.Seconds()
	res.RSS, res.PeakRSS = u1.RSS, u1.PeakRSS
	say("steady: %.0f heartbeats/s, controller %.2f cores", res.HeartbeatsPerSec, res.SteadyCPU)
	// Counted until now: the member lists' last deltas may come after
	// the last launch reached its node.
	res.PeerP50, _ = peers.percentile(50)
	res.PeerP99, res.PeerArrivals = peers.percentile(99)
	say("%d new addresses reached their peers' nodes: p50 %s, p99 %s", res.PeerArrivals, res.PeerP50, res.PeerP99)

	if res.DBSizeBytes, err = DBSize(ctx, o.DataDir, o.DB); err != nil {
		return res, err
	}
	if res.NodesUp, err = nodesUp(ctx, ctl); err != nil {
		return res, err
	}
	cancel()
	fleet.Wait()
	st := simnode.Sum(nodes)
	res.Relaunches, res.Heartbeats, res.HeartbeatErrors, res.PollErrors = st.Relaunches, st.Heartbeats, st.HeartbeatErrors, st.PollErrors
	res.LastError, res.MemberResyncs = st.LastError, st.MemberResyncs
	return res, nil
}

// enrollFleet enrolls one simulated node per token, each from a loopback
// address of its own, and hands each to started once enrolled.
// how gives the nodes' ways of asking (WholeMembers, NoStream) and the
// member-list steps they share.
func enrollFleet(ctx context.Context, nodeURL string, tokens []string, how simnode.Config, onMembers func([]string, time.Time),
	started func(*simnode.Node)) ([]*simnode.Node, error) {
	nodes := make([]*simnode.Node, len(tokens))
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 1)
	for range 16 {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(tokens) || ctx.Err() != nil {
					return
				}
				n, err := simnode.Enroll(ctx, simnode.Config{Controller: nodeURL, Token: tokens[i], WholeMembers: how.WholeMembers, NoStream: how.NoStream, MemberSteps: how.MemberSteps, OnMembers: onMembers,
					Hostname: fmt.Sprintf("sim-%05d", i), LocalIP: simnode.LoopbackIP(i),
					Capacity: nodeapi.Capacity{Cores: 64, MemoryMiB: 64 << 10, DiskGiB: 2 << 10}})
				if err != nil {
					select {
					case errs <- err:
					default:
					}
					return
				}
				nodes[i] = n
				started(n)
			}
		})
	}
	wg.Wait()
	select {
	case err := <-errs:
		return nil, err
	default:
	}
	return nodes, nil
}

// tenant is one account's EC2 client.
type tenant struct {
	name   string
	client *sdk.Client
}

func newTenants(endpoint string, seed Seed) []tenant {
	hc := &http.Client{Transport: ec2test.BufferingTransport{Next: &http.Transport{MaxIdleConnsPerHost: 64}}}
	out := make([]tenant, len(seed.Accounts))
	for i, a := range seed.Accounts {
		out[i] = tenant{name: a.Name, client: NewEC2Client(endpoint, a, hc)}
	}
	return out
}

// NewEC2Client is an account's aws-sdk-go-v2 client with the SDK's
// standard retries, over hc.
func NewEC2Client(endpoint string, a controller.Account, hc *http.Client) *sdk.Client {
	return sdk.New(sdk.Options{
		Region: controller.DefaultRegion, BaseEndpoint: aws.String(endpoint),
		Credentials: credentials.NewStaticCredentialsProvider(a.AccessKey, a.SecretKey, ""),
		HTTPClient:  hc,
	})
}

// ClientToken is a fresh idempotency token.
func ClientToken() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// launchAll launches o.Size.Instances over the tenants, PerCall at a time
// with Workers calls in flight, each call with a ClientToken. It returns
// when each instance's call was sent, every call's latency and the time
// it all took; launched is told each instance's private address and when
// its call was sent.
func launchAll(ctx context.Context, tenants []tenant, image string, o Options, launched func(addr string, t0 time.Time),
	progress func(launched int, since time.Duration)) (map[string]time.Time, []time.Duration, time.Duration, error) {
	type job struct {
		t     tenant
		count int
	}
	jobs := make(chan job)
	go func() {
		defer close(jobs)
		left, i := o.Size.Instances, 0
		for left > 0 {
			n := min(left, o.PerCall)
			select {
			case jobs <- job{tenants[i%len(tenants)], n}:
			case <-ctx.Done():
				return
			}
			left -= n
			i++
		}
	}()
	var mu sync.Mutex
	sent := map[string]time.Time{}
	var calls []time.Duration
	var firstErr error
	start := time.Now()
	// Progress each tenth of the launches, from 10,000 up.
	step := 0
	if o.Size.Instances >= 10000 {
		step = o.Size.Instances / 10
	}
	next := step
	var wg sync.WaitGroup
	for range o.Workers {
		wg.Go(func() {
			for j := range jobs {
				t0 := time.Now()
				out, err := j.t.client.RunInstances(ctx, &sdk.RunInstancesInput{ImageId: aws.String(image),
					InstanceType: types.InstanceType("m1.small"), MinCount: aws.Int32(int32(j.count)), MaxCount: aws.Int32(int32(j.count)),
					ClientToken: aws.String(ClientToken())})
				d := time.Since(t0)
				mu.Lock()
				if err != nil {
					if firstErr == nil {
						firstErr = fmt.Errorf("RunInstances for %s: %w", j.t.name, err)
					}
				} else {
					calls = append(calls, d)
					for _, in := range out.Instances {
						sent[aws.ToString(in.InstanceId)] = t0
						if a := aws.ToString(in.PrivateIpAddress); a != "" && launched != nil {
							launched(a, t0)
						}
					}
				}
				report := step > 0 && len(sent) >= next
				if report {
					next += step
				}
				n := len(sent)
				mu.Unlock()
				if report && progress != nil {
					progress(n, time.Since(start))
				}
			}
		})
	}
	wg.Wait()
	return sent, calls, time.Since(start), firstErr
}

// launchPaced sends o.PacedCalls RunInstances of one instance each, one
// every 1/o.PacedRate seconds over the tenants, each at its time whatever
// the others' latency (open loop), and returns when each instance's call
// was sent and each call's latency; launched is told each private address
// and its call's time.
func launchPaced(ctx context.Context, tenants []tenant, image string, o Options,
	launched func(addr string, t0 time.Time)) (map[string]pacedCall, []time.Duration, error) {
	var mu sync.Mutex
	sent := map[string]pacedCall{}
	var calls []time.Duration
	var firstErr error
	var wg sync.WaitGroup
	tick := time.NewTicker(time.Duration(float64(time.Second) / o.PacedRate))
	defer tick.Stop()
	for i := range o.PacedCalls {
		select {
		case <-ctx.Done():
			wg.Wait()
			return sent, calls, ctx.Err()
		case <-tick.C:
		}
		t := tenants[i%len(tenants)]
		wg.Go(func() {
			t0 := time.Now()
			out, err := t.client.RunInstances(ctx, &sdk.RunInstancesInput{ImageId: aws.String(image),
				InstanceType: types.InstanceType("m1.small"), MinCount: aws.Int32(1), MaxCount: aws.Int32(1),
				ClientToken: aws.String(ClientToken())})
			back := time.Now()
			d := back.Sub(t0)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if firstErr == nil {
					firstErr = fmt.Errorf("paced RunInstances for %s: %w", t.name, err)
				}
				return
			}
			calls = append(calls, d)
			for _, in := range out.Instances {
				sent[aws.ToString(in.InstanceId)] = pacedCall{sent: t0, returned: back}
				if a := aws.ToString(in.PrivateIpAddress); a != "" && launched != nil {
					launched(a, t0)
				}
			}
		})
	}
	wg.Wait()
	return sent, calls, firstErr
}

// pacedCall is when a paced RunInstances was sent and when its answer
// came back to the client.
type pacedCall struct{ sent, returned time.Time }

// describeAll has every tenant list its instances calls times.
func describeAll(ctx context.Context, tenants []tenant, calls int) ([]time.Duration, error) {
	var out []time.Duration
	for range calls {
		for _, t := range tenants {
			t0 := time.Now()
			p := sdk.NewDescribeInstancesPaginator(t.client, &sdk.DescribeInstancesInput{MaxResults: aws.Int32(1000)})
			for p.HasMorePages() {
				if _, err := p.NextPage(ctx); err != nil {
					return nil, fmt.Errorf("DescribeInstances for %s: %w", t.name, err)
				}
			}
			out = append(out, time.Since(t0))
		}
	}
	return out, nil
}

// nodesUp counts the nodes `ironbark node list` shows up.
func nodesUp(ctx context.Context, ctl *Controller) (int, error) {
	out, err := ctl.Command(ctx, "node", "list", "--json")
	if err != nil {
		return 0, err
	}
	return countUp(out)
}

// ctlSched samples the controller's goroutine waits from its debug
// listener; an empty sample (no listener, or a failure: the report then
// says 0) costs the run nothing.
func ctlSched(o Options) schedwait.Sample {
	if o.DebugAddr == "" {
		return schedwait.Sample{}
	}
	s, err := schedwait.Fetch(&http.Client{Timeout: 10 * time.Second}, "http://"+o.DebugAddr+"/debug/sched")
	if err != nil {
		return schedwait.Sample{}
	}
	return s
}

func percentile(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := (len(s)*p + 99) / 100
	return s[min(max(i-1, 0), len(s)-1)]
}

func tail(s string, lines int) string {
	n := 0
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == '\n' {
			n++
			if n > lines {
				return s[i+1:]
			}
		}
	}
	return s
}

// ctlCPU is the controller's CPU since u0, for progress lines.
func ctlCPU(ctl *Controller, u0 Usage) string {
	u, err := ctl.Usage()
	if err != nil {
		return "?"
	}
	return (u.CPU - u0.CPU).Round(time.Second).String()
}

// settle waits until no member address has reached any node for
// settleQuiet, at most SettleMax, and says how long that took (to the
// last address that arrived).
func settle(ctx context.Context, nodes []*simnode.Node) (time.Duration, error) {
	start := time.Now()
	last, lastAt := simnode.Sum(nodes).DesiredMembers, start
	for time.Since(lastAt) < settleQuiet {
		if time.Since(start) > SettleMax {
			return 0, fmt.Errorf("member-list updates still reaching the nodes after %s", SettleMax)
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if m := simnode.Sum(nodes).DesiredMembers; m != last {
			last, lastAt = m, time.Now()
		}
	}
	return lastAt.Sub(start), nil
}
