package scale

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	sdk "github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go"

	"ironbark/controller/ec2/ec2test"
	"ironbark/internal/lab"
	"ironbark/internal/nodeapi"
	"ironbark/internal/simnode"
	"ironbark/internal/store/storetest"
)

// answered reports whether err is the service's own answer (an EC2
// error code), not a call cut off before its answer arrived.
func answered(err error) bool {
	var ae smithy.APIError
	return errors.As(err, &ae)
}

// leads is the log line of the controller that runs the periodic jobs.
const leads = "this controller runs the background jobs now"

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %s", what, d)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Two controllers on one PostgreSQL behind HAProxy; one is killed
// (SIGKILL) in the middle of a burst of RunInstances with ClientTokens.
// Every call succeeds for its client, every token made its instances
// exactly once, every instance reaches exactly one node once, and the
// periodic jobs pass to the survivor.
//
// A call whose answer was cut off by the kill (HAProxy had forwarded the
// status line and part of the body) fails in the SDK without a retry:
// smithy does not retry a body that fails to decode. The client then
// sends the same call with the same ClientToken, as EC2's idempotency
// rules tell a caller to, and must get the instances the first attempt
// made, not new ones.
func TestTwoControllersBehindHAProxy(t *testing.T) {
	lab.Require(t, "haproxy")
	bin := ironbarkBinary(t)
	url := storetest.Postgres(t, nil).URL()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	dir := t.TempDir()
	const nodes, tenants, calls, perCall = 6, 4, 96, 2
	seed, err := Prepare(ctx, dir, url, tenants, nodes, "10.88.0.0/16")
	if err != nil {
		t.Fatal(err)
	}
	// Both controllers share the data dir (its CA, secret key and
	// settings), as two frontends share them over a shared filesystem.
	ctls := make([]*Controller, 2)
	for i := range ctls {
		c := &Controller{Binary: bin, DataDir: dir, DB: url}
		if c.EC2Addr, err = freeAddr(); err != nil {
			t.Fatal(err)
		}
		if c.NodeAddr, err = freeAddr(); err != nil {
			t.Fatal(err)
		}
		ctls[i] = c
	}
	hp := &HAProxy{}
	if hp.EC2Addr, err = freeAddr(); err != nil {
		t.Fatal(err)
	}
	for _, c := range ctls {
		c.Endpoint = "http://" + hp.EC2Addr + "/"
		if err := c.Start(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Stop)
	}
	if err := hp.Start(ctx, dir, ctls); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hp.Stop)
	t.Cleanup(func() {
		if t.Failed() {
			for i, c := range ctls {
				t.Logf("controller %d log:\n%s", i, tail(c.Log(), 60))
			}
			t.Logf("haproxy log:\n%s", tail(hp.Log(), 30))
		}
	})

	fleet := make([]*simnode.Node, nodes)
	nctx, stopNodes := context.WithCancel(ctx)
	var running sync.WaitGroup
	t.Cleanup(func() { stopNodes(); running.Wait() })
	for i := range fleet {
		n, err := simnode.Enroll(ctx, simnode.Config{Controller: "https://" + hp.NodeAddr, Token: seed.Tokens[i],
			Hostname: fmt.Sprintf("ha-%d", i), Capacity: nodeapi.Capacity{Cores: 64, MemoryMiB: 64 << 10, DiskGiB: 1 << 10}})
		if err != nil {
			t.Fatal(err)
		}
		fleet[i] = n
		running.Go(func() { n.Run(nctx) })
	}

	// One controller leads the periodic jobs; that is the one killed.
	leader := -1
	waitFor(t, "a controller leads the periodic jobs", time.Minute, func() bool {
		for i, c := range ctls {
			if strings.Contains(c.Log(), leads) {
				leader = i
				return true
			}
		}
		return false
	})
	if strings.Contains(ctls[1-leader].Log(), leads) {
		t.Fatal("both controllers lead the periodic jobs")
	}

	hc := &http.Client{Transport: ec2test.BufferingTransport{Next: &http.Transport{MaxIdleConnsPerHost: 16}}}
	clients := make([]*sdk.Client, tenants)
	for i, a := range seed.Accounts {
		clients[i] = NewEC2Client("http://"+hp.EC2Addr+"/", a, hc)
	}
	type launch struct {
		tenant int
		token  string
		ids    []string
	}
	var (
		mu       sync.Mutex
		launches []launch
		failures []error
		retried  int // calls the SDK retried
		resent   int // calls the client sent again with the same token
		done     atomic.Int64
	)
	jobs := make(chan int)
	go func() {
		defer close(jobs)
		for i := range calls {
			jobs <- i % tenants
		}
	}()
	killed := make(chan struct{})
	go func() {
		defer close(killed)
		for done.Load() < calls/3 && ctx.Err() == nil {
			time.Sleep(time.Millisecond)
		}
		ctls[leader].Kill()
	}()
	var wg sync.WaitGroup
	for range 3 * tenants {
		wg.Go(func() {
			for ti := range jobs {
				tok := ClientToken()
				in := &sdk.RunInstancesInput{ImageId: aws.String(seed.Image),
					InstanceType: types.InstanceType("m1.small"), MinCount: aws.Int32(perCall), MaxCount: aws.Int32(perCall),
					ClientToken: aws.String(tok)}
				out, err := clients[ti].RunInstances(ctx, in)
				sends := 1
				// Only a call that got no answer is sent again: an error
				// the controller answered still counts as a failure.
				for ; err != nil && !answered(err) && sends < 3 && ctx.Err() == nil; sends++ {
					t.Logf("resending RunInstances with token %s after: %v", tok, err)
					out, err = clients[ti].RunInstances(ctx, in)
				}
				mu.Lock()
				if sends > 1 {
					resent++
				}
				if err != nil {
					failures = append(failures, err)
				} else {
					l := launch{tenant: ti, token: tok}
					for _, in := range out.Instances {
						l.ids = append(l.ids, aws.ToString(in.InstanceId))
					}
					launches = append(launches, l)
					if r, ok := retry.GetAttemptResults(out.ResultMetadata); ok && len(r.Results) > 1 {
						retried++
					}
				}
				mu.Unlock()
				done.Add(1)
			}
		})
	}
	wg.Wait()
	<-killed
	for _, err := range failures {
		t.Errorf("a client saw RunInstances fail beyond its retries: %v", err)
	}
	t.Logf("%d calls, %d of them retried by the SDK and %d sent again by the client after controller %d was killed",
		len(launches), retried, resent, leader)

	// Each token made its instances once: what each tenant's
	// DescribeInstances shows by client token is what the call answered.
	want := map[string]string{} // instance -> token
	for _, l := range launches {
		if len(l.ids) != perCall {
			t.Errorf("token %s answered %d instances, want %d", l.token, len(l.ids), perCall)
		}
		for _, id := range l.ids {
			if prev, dup := want[id]; dup {
				t.Errorf("instance %s answered to tokens %s and %s", id, prev, l.token)
			}
			want[id] = l.token
		}
	}
	for ti, c := range clients {
		p := sdk.NewDescribeInstancesPaginator(c, &sdk.DescribeInstancesInput{MaxResults: aws.Int32(1000)})
		for p.HasMorePages() {
			out, err := p.NextPage(ctx)
			if err != nil {
				t.Fatalf("tenant %d: DescribeInstances: %v", ti, err)
			}
			for _, r := range out.Reservations {
				for _, in := range r.Instances {
					id, tok := aws.ToString(in.InstanceId), aws.ToString(in.ClientToken)
					if want[id] != tok {
						t.Errorf("tenant %d holds %s (token %q) that no call answered with that token: a launch made twice", ti, id, tok)
					}
				}
			}
		}
	}
	if len(want) != calls*perCall {
		t.Fatalf("%d instances answered, want %d", len(want), calls*perCall)
	}

	// Every launch reaches exactly one node, once, through whichever
	// controller its node now talks to.
	waitFor(t, "every launch reaches its node", 3*time.Minute, func() bool {
		return simnode.Sum(fleet).Launches >= int64(len(want))
	})
	seen := map[string]int{}
	for _, n := range fleet {
		for id := range n.Received() {
			seen[id]++
		}
	}
	for id := range want {
		if seen[id] != 1 {
			t.Errorf("instance %s reached %d nodes, want 1", id, seen[id])
		}
	}
	if len(seen) != len(want) {
		t.Errorf("nodes received %d launches, %d were made", len(seen), len(want))
	}
	st := simnode.Sum(fleet)
	if st.Relaunches != 0 {
		t.Errorf("%d launches were dispatched twice to the same node", st.Relaunches)
	}
	// Polls alternate between the controllers: each delta a node got
	// applied onto the list it held and gave the list named.
	if st.MemberResyncs != 0 {
		t.Errorf("%d answers' member-list deltas did not apply (last: %s)", st.MemberResyncs, st.LastError)
	}

	// The survivor takes over the periodic jobs.
	waitFor(t, "the surviving controller leads the periodic jobs", time.Minute, func() bool {
		return strings.Contains(ctls[1-leader].Log(), leads)
	})
}
