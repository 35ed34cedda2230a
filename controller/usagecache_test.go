package controller

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"testing"
	"time"

	"ironbark/controller/ec2"
	"ironbark/controller/ec2/ec2test"
	"ironbark/internal/nodeapi"
	"ironbark/internal/store"
	"ironbark/internal/store/storetest"

	"github.com/aws/aws-sdk-go-v2/aws"
	sdk "github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
)

// TestPlacementUsageCache: placement's cached usage holds this
// controller's launches, notices another controller's (the launch
// sequence moved), and a refusal it made on a cache that still counted an
// ended instance is retried on a fresh read.
func TestPlacementUsageCache(t *testing.T) {
	storetest.Each(t, Migrations(), func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		e := newTestEnv(t, db)
		a := e.client(e.alice)
		// zone-b is one node of 2 cores: two m1.small fill it.
		inB := func(c *sdk.Client) ([]string, error) {
			out, err := c.RunInstances(ctx, &sdk.RunInstancesInput{ImageId: aws.String(e.image), MinCount: aws.Int32(1), MaxCount: aws.Int32(1),
				InstanceType: "m1.small", Placement: &types.Placement{AvailabilityZone: aws.String("zone-b")}})
			if err != nil {
				return nil, err
			}
			return []string{aws.ToString(out.Instances[0].InstanceId)}, nil
		}
		first := must[[]string](t)(inB(a))
		u, cached, err := e.cloud.usage(ctx)
		if err != nil || !cached || u.Of("node-b1").Instances != 1 {
			t.Fatalf("after its own launch: cached %v, node-b1 %+v (%v); want the launch counted from the cache", cached, u.Of("node-b1"), err)
		}

		// Another controller on the same database launches the second.
		other := secondCloud(t, e)
		must[[]string](t)(inB(ec2test.Client(other.URL+"/services/compute", e.bob.AccessKey, e.bob.SecretKey)))
		if u, cached, err := e.cloud.usage(ctx); err != nil || cached || u.Of("node-b1").Instances != 2 {
			t.Fatalf("after another controller's launch: cached %v, node-b1 %+v (%v); want a whole read counting 2", cached, u.Of("node-b1"), err)
		}
		_, err = inB(a)
		wantCode(t, err, "InsufficientInstanceCapacity")

		// The first ends; the cache still counts it, and the launch that
		// follows at once fits after the fresh read.
		e.cloud.usage(ctx) // the cache is in use again
		must[*sdk.TerminateInstancesOutput](t)(a.TerminateInstances(ctx, &sdk.TerminateInstancesInput{InstanceIds: first}))
		e.observe(t, first, nodeapi.StateTerminated)
		if u, cached, _ := e.cloud.usage(ctx); !cached || u.Of("node-b1").Instances != 2 {
			t.Fatalf("cache after an end: cached %v, node-b1 %+v; want the cache still counting 2", cached, u.Of("node-b1"))
		}
		third := must[[]string](t)(inB(a))
		e.checkUsage(t)

		// Past usageRefresh the cache is still answered, and a read in
		// the background brings the end in.
		must[*sdk.TerminateInstancesOutput](t)(a.TerminateInstances(ctx, &sdk.TerminateInstancesInput{InstanceIds: third}))
		e.observe(t, third, nodeapi.StateTerminated)
		e.cloud.usageCache.mu.Lock()
		e.cloud.usageCache.at = time.Now().Add(-usageRefresh)
		e.cloud.usageCache.mu.Unlock()
		if _, cached, _ := e.cloud.usage(ctx); !cached {
			t.Fatal("a cache past usageRefresh was not answered")
		}
		deadline := time.Now().Add(10 * time.Second)
		for u, _, _ := e.cloud.usage(ctx); u.Of("node-b1").Instances != 1; u, _, _ = e.cloud.usage(ctx) {
			if time.Now().After(deadline) {
				t.Fatalf("the background read never brought the end: node-b1 %+v", u.Of("node-b1"))
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
}

// secondCloud is another controller over e's database, with e's nodes.
func secondCloud(t *testing.T, e *testEnv) *httptest.Server {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	cloud, err := New(Config{Region: "ironbark", Endpoint: "http://test/", PublicAddresses: []string{"198.51.100.0/29"}}, e.db, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	cloud.SetPlacer(&fixedPlacer{ledger: cloud, types: DefaultVMTypes(), nodes: e.placer.nodes})
	key, err := TokenKey(context.Background(), e.db)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(ec2.NewServer(ec2.Config{Handler: cloud, Credentials: cloud, Logger: log, TokenKey: key}))
	t.Cleanup(srv.Close)
	return srv
}

// TestUsageReadBehindOwnLaunches: a whole read of node usage that
// finishes after launches of this controller it did not see (a background
// read under a steady stream of launches) is kept with them added, so the
// cache does not age out into a read under the placement lock; one that
// finishes behind another controller's launch is not kept.
func TestUsageReadBehindOwnLaunches(t *testing.T) {
	storetest.Each(t, Migrations(), func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		e := newTestEnv(t, db)
		a := e.client(e.alice)
		inB := func(c *sdk.Client) {
			t.Helper()
			if _, err := c.RunInstances(ctx, &sdk.RunInstancesInput{ImageId: aws.String(e.image), MinCount: aws.Int32(1), MaxCount: aws.Int32(1),
				InstanceType: "m1.small", Placement: &types.Placement{AvailabilityZone: aws.String("zone-b")}}); err != nil {
				t.Fatal(err)
			}
		}
		inB(a)
		// A read at this point, taken in after this controller's next
		// launch: kept, counting both, as fresh as the read.
		old, seq, err := e.cloud.readUsage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		inB(a)
		e.cloud.usageCache.mu.Lock()
		e.cloud.usageCache.at = time.Now().Add(-usageMaxAge) // aged out
		e.cloud.usageCache.mu.Unlock()
		e.cloud.adoptUsage(old, seq)
		u, cached, err := e.cloud.usage(ctx)
		if err != nil || !cached || u.Of("node-b1").Instances != 2 {
			t.Fatalf("a read behind one own launch: cached %v, node-b1 %+v (%v); want it kept, counting both launches", cached, u.Of("node-b1"), err)
		}
		e.checkUsage(t)

		// Behind another controller's launch: not kept, and the next
		// placement reads whole.
		old, seq, err = e.cloud.readUsage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		other := secondCloud(t, e)
		if _, err := ec2test.Client(other.URL+"/services/compute", e.bob.AccessKey, e.bob.SecretKey).RunInstances(ctx, &sdk.RunInstancesInput{
			ImageId: aws.String(e.image), MinCount: aws.Int32(1), MaxCount: aws.Int32(1), InstanceType: "m1.small"}); err != nil {
			t.Fatal(err)
		}
		e.cloud.adoptUsage(old, seq)
		if _, cached, err := e.cloud.usage(ctx); err != nil || cached {
			t.Fatalf("a read behind another controller's launch: cached %v (%v); want a whole read", cached, err)
		}
		e.checkUsage(t)
	})
}
