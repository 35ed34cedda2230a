package controller

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	sdk "github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"ironbark/internal/nodeapi"
	"ironbark/internal/store"
	"ironbark/internal/store/storetest"
)

// queueLaunches holds the controller's launch queue as a batch under way
// would, starts each launch in turn once the one before it queued (so the
// batch has them in this order), and then hands the queue to the first:
// it places them all as one batch. It returns each launch's answer.
func queueLaunches(t *testing.T, c *Cloud, launches ...func() (*sdk.RunInstancesOutput, error)) ([]*sdk.RunInstancesOutput, []error) {
	t.Helper()
	lq := &c.launchQ
	lq.mu.Lock()
	if lq.busy {
		lq.mu.Unlock()
		t.Fatal("the launch queue is busy")
	}
	lq.busy = true
	lq.mu.Unlock()
	outs, errs := make([]*sdk.RunInstancesOutput, len(launches)), make([]error, len(launches))
	done := make(chan int, len(launches))
	for i, run := range launches {
		go func() {
			outs[i], errs[i] = run()
			done <- i
		}()
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(time.Millisecond) {
			lq.mu.Lock()
			n := len(lq.waiting)
			lq.mu.Unlock()
			if n == i+1 {
				break
			}
			select {
			case j := <-done:
				t.Fatalf("launch %d answered while the queue was held: %v", j, errs[j])
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("launch %d did not queue", i)
			}
		}
	}
	lq.mu.Lock()
	next := lq.waiting[0]
	lq.waiting = lq.waiting[1:]
	lq.mu.Unlock()
	close(next.lead)
	for range launches {
		<-done
	}
	return outs, errs
}

// batchLog keeps what the controller logs of its launches: each launch's
// batch size, and whether a batch failed.
type batchLog struct {
	mu      sync.Mutex
	sizes   []int64
	failed  int
	handler slog.Handler
}

func (b *batchLog) Enabled(context.Context, slog.Level) bool { return true }
func (b *batchLog) WithAttrs([]slog.Attr) slog.Handler       { return b }
func (b *batchLog) WithGroup(string) slog.Handler            { return b }
func (b *batchLog) Handle(_ context.Context, r slog.Record) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch r.Message {
	case "run instances":
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "batch" {
				b.sizes = append(b.sizes, a.Value.Int64())
			}
			return true
		})
	case "launch batch failed: placing its launches one at a time":
		b.failed++
	}
	return nil
}

// take returns what was logged since the last take.
func (b *batchLog) take() (sizes []int64, failed int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	sizes, failed = b.sizes, b.failed
	b.sizes, b.failed = nil, 0
	return sizes, failed
}

// TestLaunchBatch places launches queued behind one another in one
// transaction and checks that each gets the answer it would have got
// alone: the batch's launches see the capacity, quota, client tokens and
// addresses the ones before them took, a refusal is its launch's own, and
// a launch refused after it wrote makes the batch's launches run again one
// at a time.
func TestLaunchBatch(t *testing.T) {
	storetest.Each(t, Migrations(), func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		e := newTestEnv(t, db)
		alice, bob := e.client(e.alice), e.client(e.bob)
		logged := &batchLog{}
		e.cloud.log = slog.New(logged)
		one := int64(2)
		if err := SetQuota(ctx, db, "bob", map[string]*int64{QuotaInstances: &one}); err != nil {
			t.Fatal(err)
		}
		seq := func() int64 {
			var s int64
			if err := db.QueryRow(ctx, `SELECT seq FROM launch_seq`).Scan(&s); err != nil {
				t.Fatal(err)
			}
			return s
		}
		run := func(c *sdk.Client, n int32, token string, public bool) func() (*sdk.RunInstancesOutput, error) {
			in := &sdk.RunInstancesInput{ImageId: aws.String(e.image), MinCount: aws.Int32(n), MaxCount: aws.Int32(n),
				InstanceType: "m1.small", Placement: &types.Placement{AvailabilityZone: aws.String("zone-a")}}
			if token != "" {
				in.ClientToken = aws.String(token)
			}
			if public {
				in.NetworkInterfaces = []types.InstanceNetworkInterfaceSpecification{{DeviceIndex: aws.Int32(0), AssociatePublicIpAddress: aws.Bool(true)}}
			}
			return func() (*sdk.RunInstancesOutput, error) { return c.RunInstances(ctx, in) }
		}
		// zone-a holds 16 m1.small (two nodes of 8 cores).
		seq0 := seq()
		outs, errs := queueLaunches(t, e.cloud,
			run(alice, 4, "same", false), // placed
			run(alice, 4, "same", false), // the same reservation
			run(bob, 2, "", false),       // bob's quota of 2
			run(bob, 1, "", false),       // past bob's quota
			run(alice, 10, "", false),    // the rest of the zone
			run(alice, 1, "", false),     // no room left
		)
		for i, want := range []string{"", "", "", "InstanceLimitExceeded", "", "InsufficientInstanceCapacity"} {
			if want == "" {
				if errs[i] != nil {
					t.Fatalf("launch %d: %v", i, errs[i])
				}
				continue
			}
			wantCode(t, errs[i], want)
		}
		// The three launches that placed were one batch of six (the
		// token's second request answers with the first's reservation).
		if sizes, failed := logged.take(); len(sizes) != 3 || failed != 0 || sizes[0] != 6 || sizes[2] != 6 {
			t.Fatalf("logged batch sizes %v, %d failed batches; want three launches of one batch of six", sizes, failed)
		}
		if a, b := aws.ToString(outs[0].ReservationId), aws.ToString(outs[1].ReservationId); a != b {
			t.Fatalf("one client token, two reservations: %s and %s", a, b)
		}
		if got := seq() - seq0; got != 3 {
			t.Fatalf("the launch sequence moved by %d, want 3 (the batch's launches that placed)", got)
		}
		// Every instance has its own address and the zone is exactly full.
		ips, perNode := map[string]bool{}, map[string]int{}
		for _, i := range []int{0, 2, 4} {
			for _, in := range outs[i].Instances {
				ip := aws.ToString(in.PrivateIpAddress)
				if ips[ip] {
					t.Fatalf("address %s given twice", ip)
				}
				ips[ip] = true
			}
		}
		rows, err := db.Query(ctx, `SELECT node_id, COUNT(*) FROM instances WHERE state <> 'terminated' GROUP BY node_id`)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var node string
			var n int
			if err := rows.Scan(&node, &n); err != nil {
				t.Fatal(err)
			}
			perNode[node] = n
		}
		rows.Close()
		if perNode["node-a1"] != 8 || perNode["node-a2"] != 8 || len(ips) != 16 {
			t.Fatalf("instances per node %v, %d addresses; want 8 on each of zone-a's nodes", perNode, len(ips))
		}
		u, cached, err := e.cloud.usage(ctx)
		if err != nil || !cached || u.Of("node-a1").Instances != 8 || u.Of("node-a2").Instances != 8 {
			t.Fatalf("placement's usage after the batch: cached %v, a1 %+v, a2 %+v, %v", cached, u.Of("node-a1"), u.Of("node-a2"), err)
		}

		// A launch refused after it drew public addresses (the pool runs
		// out) rolls the batch back; each launch is then placed alone.
		must[*sdk.TerminateInstancesOutput](t)(alice.TerminateInstances(ctx, &sdk.TerminateInstancesInput{InstanceIds: instanceIDsOf(outs[4])}))
		e.observe(t, instanceIDsOf(outs[4]), "terminated")
		seq0 = seq()
		outs, errs = queueLaunches(t, e.cloud,
			run(alice, 1, "", true),  // placed, with a public address
			run(alice, 9, "", true),  // more than the /29 has left
			run(alice, 1, "", false), // placed
		)
		if errs[0] != nil || errs[2] != nil {
			t.Fatalf("launches beside the refused one: %v, %v", errs[0], errs[2])
		}
		wantCode(t, errs[1], "AddressLimitExceeded")
		if _, failed := logged.take(); failed != 1 {
			t.Fatalf("%d failed batches logged, want 1", failed)
		}
		if aws.ToString(outs[0].Instances[0].PublicIpAddress) == "" {
			t.Fatal("the launch with a public address has none")
		}
		if got := seq() - seq0; got != 2 {
			t.Fatalf("the launch sequence moved by %d, want 2", got)
		}
		var held int
		if err := db.QueryRow(ctx, `SELECT COUNT(*) FROM addresses`).Scan(&held); err != nil || held != 1 {
			t.Fatalf("%d public addresses held, want 1 (the refused launch's were rolled back): %v", held, err)
		}
	})
}

func instanceIDsOf(out *sdk.RunInstancesOutput) []string {
	var ids []string
	for _, in := range out.Instances {
		ids = append(ids, aws.ToString(in.InstanceId))
	}
	return ids
}

// panickyPlacer panics on Place while armed.
type panickyPlacer struct {
	Placer
	armed atomic.Bool
}

func (p *panickyPlacer) Place(ctx context.Context, zone string, vt nodeapi.VMType, n int) (string, []string, error) {
	if p.armed.Load() {
		panic("placement bug")
	}
	return p.Placer.Place(ctx, zone, vt, n)
}

// A panic while a batch is placed answers every launch of it with an
// error and frees the queue: the launches after it are placed.
func TestLaunchBatchPanic(t *testing.T) {
	storetest.Each(t, Migrations(), func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		e := newTestEnv(t, db)
		pp := &panickyPlacer{Placer: e.placer}
		pp.armed.Store(true)
		e.cloud.SetPlacer(pp)
		e.cloud.log = slog.New(slog.DiscardHandler)
		alice := e.client(e.alice)
		run := func() (*sdk.RunInstancesOutput, error) {
			return alice.RunInstances(ctx, &sdk.RunInstancesInput{ImageId: aws.String(e.image), MinCount: aws.Int32(1),
				MaxCount: aws.Int32(1), InstanceType: "m1.small"})
		}
		_, errs := queueLaunches(t, e.cloud, run, run, run)
		for i, err := range errs {
			if err == nil {
				t.Fatalf("launch %d of the batch that panicked succeeded", i)
			}
		}
		pp.armed.Store(false)
		if _, err := run(); err != nil {
			t.Fatalf("launch after the panic: %v", err)
		}
		var n int
		if err := db.QueryRow(ctx, `SELECT COUNT(*) FROM instances`).Scan(&n); err != nil || n != 1 {
			t.Fatalf("%d instances, want 1 (the batch that panicked wrote none): %v", n, err)
		}
	})
}
