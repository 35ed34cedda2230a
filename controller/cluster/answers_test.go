package cluster

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	sdk "github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"ironbark/controller"
	"ironbark/internal/nodeapi"
	"ironbark/internal/store"
	"ironbark/internal/store/storetest"
)

// TestAnswerRebuiltForMemberChanges: a node woken because a peer group's
// members changed (a launch or termination on another node) gets its
// answer rebuilt from its last one with the member list read anew, on
// the controller it polls, which on PostgreSQL is not the one that
// launched; a change of its own instances (a reboot, here) is read whole,
// never served from the last answer.
func TestAnswerRebuiltForMemberChanges(t *testing.T) {
	storetest.Each(t, controller.Migrations(), func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		admin, image := adminAndImage(t, db, "answers")
		dataDir := t.TempDir()
		a := startControllerIn(t, db.URL(), db.KeyFile(), admin, dataDir)
		// The node polls b, another controller, where the store tells
		// one controller of another's changes (PostgreSQL); on SQLite
		// there is one controller.
		polled := a
		if db.CanNotify() {
			polled = startControllerIn(t, db.URL(), db.KeyFile(), admin, dataDir)
		}
		if err := a.svc.AddCluster(ctx, "c1", "GREEDY"); err != nil {
			t.Fatal(err)
		}
		urlA, urlPolled := serve(t, a.svc), serve(t, polled.svc)
		nodes := map[string]*nodeapi.Client{}                         // heartbeats go to a
		one := nodeapi.Capacity{Cores: 1, MemoryMiB: 256, DiskGiB: 5} // one m1.small
		// On SQLite there is one controller: it rebuilds answers too.
		polled.svc.cfg.ReadWhole = false
		up := func(host string) (string, *nodeapi.Client) {
			t.Helper()
			token, err := a.svc.NewToken(ctx, a.svc.CA(), "c1", time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			resp, tc := enrollTLS(t, urlA, token, host, one)
			n := nodeAt{id: resp.NodeID, conf: tc}
			if _, err := n.client(t, urlA).Heartbeat(ctx, nodeapi.HeartbeatRequest{Hostname: host, Full: true, Capacity: one}); err != nil {
				t.Fatal(err)
			}
			nodes[resp.NodeID] = n.client(t, urlA)
			return resp.NodeID, n.client(t, urlPolled)
		}
		launch := func() (id, ip string) {
			t.Helper()
			out, err := a.ec2.RunInstances(ctx, &sdk.RunInstancesInput{ImageId: aws.String(image),
				InstanceType: types.InstanceType("m1.small"), MinCount: aws.Int32(1), MaxCount: aws.Int32(1)})
			if err != nil {
				t.Fatal(err)
			}
			return aws.ToString(out.Instances[0].InstanceId), aws.ToString(out.Instances[0].PrivateIpAddress)
		}
		// x on the first node (full after it), y on the second: both in
		// the default group, which names itself as its peer.
		n1, c1 := up("host-a1")
		x, ipX := launch()
		up("host-a2")
		var held nodeapi.Held
		d, err := c1.InstancesHeld(ctx, "", 0, &held)
		if err != nil {
			t.Fatal(err)
		}
		if err := sameMembers(d, []string{ipX}); err != nil {
			t.Fatal(err)
		}
		// poll starts a long poll of n1 on the polled controller and, once
		// it waits, returns what collects its answer (another state).
		poll := func(step string) func() nodeapi.Desired {
			t.Helper()
			got := make(chan nodeapi.Desired, 1)
			errc := make(chan error, 1)
			etag := d.ETag
			go func() {
				dd, err := c1.InstancesHeld(ctx, etag, 60*time.Second, &held)
				if err != nil {
					errc <- err
					return
				}
				got <- dd
			}()
			waitForPoll(polled.svc, n1)
			return func() nodeapi.Desired {
				t.Helper()
				select {
				case err := <-errc:
					t.Fatalf("%s: %v", step, err)
				case dd := <-got:
					if dd.ETag == etag {
						t.Fatalf("%s: answered the same state", step)
					}
					return dd
				}
				return nodeapi.Desired{}
			}
		}
		// A launch on the other node: n1's answer is rebuilt, with y.
		hits := polled.svc.answers.hitCount()
		answer := poll("a launch elsewhere")
		y, ipY := launch()
		d = answer()
		if err := sameMembers(d, []string{ipX, ipY}); err != nil {
			t.Fatalf("after a launch elsewhere: %v", err)
		}
		if err := sameSpecs(d, []string{x}); err != nil || !slices.Equal(d.Kept, []string{x}) {
			t.Fatalf("after a launch elsewhere: kept %v, %v", d.Kept, err)
		}
		if polled.svc.answers.hitCount() == hits {
			t.Fatal("the answer to a change of member lists only was read whole")
		}

		// A reboot of x (running) changes n1's own spec: read whole,
		// whatever the cache holds.
		if _, err := nodes[n1].Heartbeat(ctx, nodeapi.HeartbeatRequest{Hostname: "host-a1", Full: true, Capacity: one,
			Instances: []nodeapi.InstanceStatus{{InstanceID: x, State: nodeapi.StateRunning}}}); err != nil {
			t.Fatal(err)
		}
		answer = poll("a reboot")
		if _, err := a.ec2.RebootInstances(ctx, &sdk.RebootInstancesInput{InstanceIds: []string{x}}); err != nil {
			t.Fatal(err)
		}
		d = answer()
		if len(d.Instances) != 1 || d.Instances[0].RebootSerial != 1 || len(d.Kept) != 0 {
			t.Fatalf("after a reboot: %+v (kept %v); want x sent with reboot serial 1", d.Instances, d.Kept)
		}

		// y terminated: n1's list loses it, again rebuilt.
		hits = polled.svc.answers.hitCount()
		answer = poll("a termination elsewhere")
		if _, err := a.ec2.TerminateInstances(ctx, &sdk.TerminateInstancesInput{InstanceIds: []string{y}}); err != nil {
			t.Fatal(err)
		}
		d = answer()
		if err := sameMembers(d, []string{ipX}); err != nil {
			t.Fatalf("after a termination elsewhere: %v", err)
		}
		if d.Instances[0].RebootSerial != 1 {
			t.Fatalf("after a termination elsewhere, x went back to %+v", d.Instances[0])
		}
		if polled.svc.answers.hitCount() == hits {
			t.Fatal("the answer to a termination elsewhere was read whole")
		}
	})
}
