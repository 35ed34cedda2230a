package controller

import (
	"context"
	"reflect"
	"slices"
	"strings"
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
			g := e.cloud.ledgerReads.heartbeat
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

// Nodes' desired states read while the reads run are read as one group
// of each kind (instances, their groups, the groups' rules), and each
// node gets what a read of its own gives: its instances in order, their
// groups, the rules (peers named) and the peers' members. A node asked for
// twice and one holding nothing are answered too, and a group split over
// several queries answers the same.
func TestDesiredReadsGathered(t *testing.T) {
	storetest.Each(t, Migrations(), func(t *testing.T, db *store.DB) {
		e := newTestEnv(t, db)
		defer e.stop()
		ctx := context.Background()
		c := e.client(e.alice)
		group := func(name string) string {
			return aws.ToString(must[*sdk.CreateSecurityGroupOutput](t)(c.CreateSecurityGroup(ctx, &sdk.CreateSecurityGroupInput{
				GroupName: aws.String(name), Description: aws.String(name)})).GroupId)
		}
		web, app := group("web"), group("app")
		for _, g := range []string{web, app} {
			if _, err := c.AuthorizeSecurityGroupIngress(ctx, &sdk.AuthorizeSecurityGroupIngressInput{GroupId: aws.String(g),
				IpPermissions: []types.IpPermission{
					{IpProtocol: aws.String("tcp"), FromPort: aws.Int32(22), ToPort: aws.Int32(22),
						IpRanges: []types.IpRange{{CidrIp: aws.String("10.0.0.0/8")}}},
					{IpProtocol: aws.String("tcp"), FromPort: aws.Int32(8000), ToPort: aws.Int32(8100),
						UserIdGroupPairs: []types.UserIdGroupPair{{GroupId: aws.String(web)}}},
				}}); err != nil {
				t.Fatal(err)
			}
		}
		for _, l := range []struct {
			zone   string
			groups []string
		}{{"zone-a", []string{web}}, {"zone-a", []string{web}}, {"zone-b", []string{app, web}}} {
			if _, err := c.RunInstances(ctx, &sdk.RunInstancesInput{ImageId: aws.String(e.image),
				MinCount: aws.Int32(2), MaxCount: aws.Int32(2), InstanceType: "m1.small", SecurityGroupIds: l.groups,
				Placement: &types.Placement{AvailabilityZone: aws.String(l.zone)}}); err != nil {
				t.Fatal(err)
			}
		}
		nodes, err := store.Column[string](db.Query(ctx, `SELECT DISTINCT node_id FROM instances ORDER BY node_id`))
		if err != nil {
			t.Fatal(err)
		}
		if len(nodes) < 2 {
			t.Fatalf("want instances on two nodes at least: %v", nodes)
		}
		asked := append(slices.Clone(nodes), nodes[0], "node-none")
		type told struct {
			specs  []nodeapi.InstanceSpec
			groups []nodeapi.SecurityGroup
		}
		read := func(node string) (told, error) {
			specs, err := e.cloud.DesiredOnNode(ctx, node)
			if err != nil {
				return told{}, err
			}
			gs, err := e.cloud.SecurityGroupsOnNode(ctx, node, specs, time.Now())
			return told{specs, gs}, err
		}
		// Each alone first: what a read of its own gives.
		want := map[string]told{}
		for _, n := range asked {
			if want[n], err = read(n); err != nil {
				t.Fatal(err)
			}
		}
		if len(want[nodes[0]].groups) == 0 || len(want[nodes[0]].specs) == 0 {
			t.Fatalf("%s was told nothing: %+v", nodes[0], want[nodes[0]])
		}
		for n, w := range want {
			if !slices.IsSortedFunc(w.specs, func(a, b nodeapi.InstanceSpec) int { return strings.Compare(a.InstanceID, b.InstanceID) }) {
				t.Fatalf("%s's instances out of order: %+v", n, w.specs)
			}
		}
		for _, chunk := range []int{ledgerReadChunk, 1} {
			defer func(was int) { ledgerReadChunk = was }(ledgerReadChunk)
			ledgerReadChunk = chunk
			r := e.cloud.ledgerReads
			runs := []int64{r.desired.Runs(), r.groups.Runs(), r.rules.Runs()}
			releases := []func(){r.desired.Hold(), r.groups.Hold(), r.rules.Hold()}
			got := make([]told, len(asked))
			errs := make([]error, len(asked))
			var wg sync.WaitGroup
			for i, n := range asked {
				wg.Go(func() { got[i], errs[i] = read(n) })
			}
			// Every node waits for the instances' read; all but the one
			// holding nothing go on to the groups' and the rules'.
			waiting := []func() int{r.desired.Waiting, r.groups.Waiting, r.rules.Waiting}
			for k, want := range []int{len(asked), len(asked) - 1, len(asked) - 1} {
				for waiting[k]() < want {
					time.Sleep(time.Millisecond)
				}
				releases[k]()
			}
			wg.Wait()
			for i, n := range asked {
				if errs[i] != nil {
					t.Fatalf("%s: %v", n, errs[i])
				}
				if !reflect.DeepEqual(got[i], want[n]) {
					t.Fatalf("chunk %d: %s read with others:\n%+v\nalone:\n%+v", chunk, n, got[i], want[n])
				}
			}
			for k, g := range []interface{ Runs() int64 }{r.desired, r.groups, r.rules} {
				if d := g.Runs() - runs[k]; d != 1 {
					t.Fatalf("chunk %d: read %d ran %d times for one group", chunk, k, d)
				}
			}
		}
	})
}
