package controller

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	sdk "github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"ironbark/internal/nodeapi"
	"ironbark/internal/store"
	"ironbark/internal/store/storetest"
)

// Heartbeats arriving while a read runs are read as one group, and each
// still gets its own node's answer: a report that changes nothing leaves
// its instances as they were, one that changes a state is recorded, a
// node asked for twice or holding nothing is answered, and a group split
// over several queries answers the same.
func TestHeartbeatReadsGathered(t *testing.T) {
	storetest.Each(t, Migrations(), func(t *testing.T, db *store.DB) {
		for _, chunk := range []int{ledgerReadChunk, 1} {
			defer func(was int) { ledgerReadChunk = was }(ledgerReadChunk)
			ledgerReadChunk = chunk
			e := newTestEnv(t, db)
			ctx := context.Background()
			// Four on one node, one on another (the test placer fills
			// a zone's nodes in order).
			var ids []string
			for zone, n := range map[string]int32{"zone-a": 4, "zone-b": 1} {
				out, err := e.client(e.alice).RunInstances(ctx, &sdk.RunInstancesInput{ImageId: aws.String(e.image),
					MinCount: aws.Int32(n), MaxCount: aws.Int32(n), InstanceType: "m1.small",
					Placement: &types.Placement{AvailabilityZone: aws.String(zone)}})
				if err != nil {
					t.Fatal(err)
				}
				for _, in := range out.Instances {
					ids = append(ids, aws.ToString(in.InstanceId))
				}
			}
			e.observe(t, ids, nodeapi.StateRunning)
			onNode := map[string][]string{}
			for _, id := range ids {
				var node string
				if err := db.QueryRow(ctx, `SELECT node_id FROM instances WHERE id = ?`, id).Scan(&node); err != nil {
					t.Fatal(err)
				}
				onNode[node] = append(onNode[node], id)
			}
			if len(onNode) < 2 {
				t.Fatalf("want instances on two nodes at least: %v", onNode)
			}
			report := func(node, state string) []nodeapi.InstanceStatus {
				var sts []nodeapi.InstanceStatus
				for _, id := range onNode[node] {
					sts = append(sts, nodeapi.InstanceStatus{InstanceID: id, State: state})
				}
				return sts
			}
			var quiet, stopping string
			for n := range onNode {
				if quiet == "" {
					quiet = n
				} else if stopping == "" {
					stopping = n
				}
			}
			calls := []struct {
				node string
				sts  []nodeapi.InstanceStatus
			}{
				{quiet, report(quiet, nodeapi.StateRunning)},
				{stopping, report(stopping, nodeapi.StateStopped)},
				{quiet, report(quiet, nodeapi.StateRunning)},
				// An instance reported by a node it is not on is a stray,
				// left to the caller's policy.
				{"node-none", report(quiet, nodeapi.StateTerminated)},
			}
			g := e.cloud.ledgerReads.gather
			runs := g.Runs()
			release := g.Hold()
			var wg sync.WaitGroup
			errs := make([]error, len(calls))
			for i, c := range calls {
				wg.Go(func() { errs[i] = e.cloud.Observe(ctx, c.node, c.sts) })
			}
			for g.Waiting() < len(calls) {
				time.Sleep(time.Millisecond)
			}
			release()
			wg.Wait()
			for i, err := range errs {
				if err != nil {
					t.Fatalf("call %d: %v", i, err)
				}
			}
			if got := g.Runs() - runs; got != 1 {
				t.Fatalf("chunk %d: %d reads for one group of heartbeats", chunk, got)
			}
			for _, id := range onNode[quiet] {
				if s := e.state(t, id); s != nodeapi.StateRunning {
					t.Fatalf("%s on the quiet node is %s", id, s)
				}
			}
			for _, id := range onNode[stopping] {
				if s := e.state(t, id); s != nodeapi.StateStopped {
					t.Fatalf("%s reported stopped is %s", id, s)
				}
			}
			e.stop()
		}
	})
}
