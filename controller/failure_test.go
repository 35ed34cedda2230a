package controller

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	sdk "github.com/aws/aws-sdk-go-v2/service/ec2"

	"ironbark/internal/nodeapi"
	"ironbark/internal/store"
	"ironbark/internal/store/storetest"
)

// nodeBoard is the cluster side's view of node liveness, set by the test.
type nodeBoard struct {
	mu sync.Mutex
	st map[string]NodeStatus
}

func (b *nodeBoard) NodeStatus(context.Context) (map[string]NodeStatus, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := map[string]NodeStatus{}
	for k, v := range b.st {
		out[k] = v
	}
	return out, nil
}

func (b *nodeBoard) set(node string, s NodeStatus, present bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if present {
		b.st[node] = s
	} else {
		delete(b.st, node)
	}
}

// A silent node's instances show impaired; terminating one there ends,
// once the node has been silent long enough, with Server.InternalError,
// and gives its capacity and address back; a user's terminate that the
// node carried out says Client.UserInitiatedShutdown.
func TestDeadNodePolicy(t *testing.T) {
	storetest.Each(t, Migrations(), func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		e := newTestEnv(t, db)
		now := time.Now()
		board := &nodeBoard{st: map[string]NodeStatus{}}
		for _, n := range e.placer.nodes {
			board.set(n.ID, NodeStatus{Up: true, LastHeartbeat: now}, true)
		}
		e.cloud.SetNodeHealth(board)
		c := e.client(e.alice)
		out := e.run(c, 3, "")
		var ids []string
		for _, in := range out.Instances {
			ids = append(ids, aws.ToString(in.InstanceId))
		}
		e.observe(t, ids, nodeapi.StateRunning)
		var node string
		if err := db.QueryRow(ctx, `SELECT node_id FROM instances WHERE id = ?`, ids[0]).Scan(&node); err != nil {
			t.Fatal(err)
		}
		status := func() map[string]string {
			t.Helper()
			st := must[*sdk.DescribeInstanceStatusOutput](t)(c.DescribeInstanceStatus(ctx, &sdk.DescribeInstanceStatusInput{InstanceIds: ids,
				IncludeAllInstances: aws.Bool(true)}))
			m := map[string]string{}
			for _, s := range st.InstanceStatuses {
				m[aws.ToString(s.InstanceId)] = string(s.SystemStatus.Status)
			}
			return m
		}
		if s := status(); s[ids[0]] != "ok" {
			t.Fatalf("status with the node up: %v", s)
		}

		// The node goes silent.
		board.set(node, NodeStatus{Up: false, LastHeartbeat: now.Add(-time.Minute)}, true)
		if s := status(); s[ids[0]] != "impaired" {
			t.Fatalf("status with the node down: %v", s)
		}
		must[*sdk.TerminateInstancesOutput](t)(c.TerminateInstances(ctx, &sdk.TerminateInstancesInput{InstanceIds: ids[:1]}))
		if n, err := e.cloud.FinishLostTerminations(ctx); err != nil || n != 0 {
			t.Fatalf("a node silent for a minute: %d terminations finished (%v), want 0", n, err)
		}
		if e.state(t, ids[0]) != nodeapi.StateShuttingDown {
			t.Fatalf("state %s", e.state(t, ids[0]))
		}
		usage := func() int {
			// The counters, not placement's cache (which sees ends
			// when it next reads them whole).
			u, _, err := e.cloud.readUsage(ctx)
			if err != nil {
				t.Fatal(err)
			}
			return u.Of(node).Instances
		}
		before := usage()
		board.set(node, NodeStatus{Up: false, LastHeartbeat: now.Add(-DefaultLostAfter - time.Minute)}, true)
		if n, err := e.cloud.FinishLostTerminations(ctx); err != nil || n != 1 {
			t.Fatalf("a node silent past LostAfter: %d terminations finished (%v), want 1", n, err)
		}
		d := must[*sdk.DescribeInstancesOutput](t)(c.DescribeInstances(ctx, &sdk.DescribeInstancesInput{InstanceIds: ids[:1]}))
		in := d.Reservations[0].Instances[0]
		if in.State.Name != "terminated" || in.StateReason == nil || aws.ToString(in.StateReason.Code) != "Server.InternalError" {
			t.Fatalf("terminated on a lost node: state %s reason %+v", in.State.Name, in.StateReason)
		}
		if after := usage(); after != before-1 {
			t.Fatalf("usage on the lost node %d -> %d, want one less", before, after)
		}
		var ip string
		if err := db.QueryRow(ctx, `SELECT COUNT(*) FROM instances WHERE state <> 'terminated' AND private_ip = (SELECT private_ip FROM instances WHERE id = ?)`, ids[0]).Scan(&ip); err != nil || ip != "0" {
			t.Fatalf("the lost instance's address is still held: %s %v", ip, err)
		}

		// A user's terminate the node carried out.
		board.set(node, NodeStatus{Up: true, LastHeartbeat: time.Now()}, true)
		must[*sdk.TerminateInstancesOutput](t)(c.TerminateInstances(ctx, &sdk.TerminateInstancesInput{InstanceIds: ids[1:2]}))
		e.observe(t, ids[1:2], nodeapi.StateTerminated)
		d = must[*sdk.DescribeInstancesOutput](t)(c.DescribeInstances(ctx, &sdk.DescribeInstancesInput{InstanceIds: ids[1:2]}))
		if r := d.Reservations[0].Instances[0].StateReason; r == nil || aws.ToString(r.Code) != "Client.UserInitiatedShutdown" {
			t.Fatalf("user terminate: reason %+v", r)
		}

		// A removed node: the terminate completes at once.
		must[*sdk.TerminateInstancesOutput](t)(c.TerminateInstances(ctx, &sdk.TerminateInstancesInput{InstanceIds: ids[2:]}))
		var node2 string
		if err := db.QueryRow(ctx, `SELECT node_id FROM instances WHERE id = ?`, ids[2]).Scan(&node2); err != nil {
			t.Fatal(err)
		}
		board.set(node2, NodeStatus{}, false)
		if n, err := e.cloud.FinishLostTerminations(ctx); err != nil || n != 1 || e.state(t, ids[2]) != nodeapi.StateTerminated {
			t.Fatalf("terminate on a removed node: %d finished (%v), state %s", n, err, e.state(t, ids[2]))
		}
	})
}

func TestStateReasonCodes(t *testing.T) {
	for reason, code := range map[string]string{
		"User initiated (2026-11-30 05:00:00 UTC)":                 "Client.UserInitiatedShutdown",
		"Client.InstanceInitiatedShutdown: the guest powered off":  "Client.InstanceInitiatedShutdown",
		"Server.InternalError: node n-1 was removed":               "Server.InternalError",
		"image sha256:ab... does not match its digest":             "Server.InternalError",
		"Server.InsufficientInstanceCapacity: no room on the node": "Server.InsufficientInstanceCapacity",
	} {
		if r := stateReasonOf(reason); r == nil || r.Code != code {
			t.Errorf("%q: %+v, want %s", reason, r, code)
		}
	}
	if stateReasonOf("") != nil {
		t.Error("a reason out of nothing")
	}
}
