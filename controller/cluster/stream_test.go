package cluster

import (
	"context"
	"errors"
	"net/http"
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

// A streamed instances request answers every change on the one response:
// launches and a termination reach the node as lines of the stream, each
// member list a delta to the line before and each unchanged spec kept, and
// the node's whole state after each line is the one a node holding nothing
// is sent. The node's cancel ends the stream; one opened with the last
// etag ends at its wait without a line when nothing changed; a node
// removed while its stream is open is sent nothing more, and refused.
func TestStreamedAnswers(t *testing.T) {
	storetest.Each(t, controller.Migrations(), func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		admin, image := adminAndImage(t, db, "stream")
		a := startControllerIn(t, db.URL(), db.KeyFile(), admin, t.TempDir())
		url := serve(t, a.svc)
		node := upNodeIn(t, a.svc, url)
		c := node.client(t, url)
		var ips, ids []string
		launch := func() {
			t.Helper()
			out, err := a.ec2.RunInstances(ctx, &sdk.RunInstancesInput{ImageId: aws.String(image),
				InstanceType: types.InstanceType("m1.small"), MinCount: aws.Int32(1), MaxCount: aws.Int32(1)})
			if err != nil {
				t.Fatal(err)
			}
			ips = append(ips, aws.ToString(out.Instances[0].PrivateIpAddress))
			ids = append(ids, aws.ToString(out.Instances[0].InstanceId))
		}

		// One stream, its lines read as they come.
		var held nodeapi.Held
		type line struct {
			d nodeapi.Desired
			g nodeapi.SecurityGroup // the default group as it came
		}
		open := func(ctx context.Context, etag string, wait time.Duration) (<-chan line, <-chan error) {
			lines, done := make(chan line, 16), make(chan error, 1)
			go func() {
				done <- c.InstancesStream(ctx, etag, wait, &held, func(d nodeapi.Desired) error {
					l := line{d: d}
					if len(d.SecurityGroups) > 0 {
						l.g = d.SecurityGroups[0]
					}
					lines <- l
					return nil
				})
			}()
			return lines, done
		}
		next := func(step string, lines <-chan line, done <-chan error) line {
			t.Helper()
			select {
			case l := <-lines:
				if err := sameMembers(l.d, ips); err != nil {
					t.Fatalf("%s: %v", step, err)
				}
				if err := sameSpecs(l.d, ids); err != nil {
					t.Fatalf("%s: %v", step, err)
				}
				return l
			case err := <-done:
				t.Fatalf("%s: the stream ended (%v) before the change's line", step, err)
			case <-time.After(20 * time.Second):
				t.Fatalf("%s: no line within 20 s", step)
			}
			return line{}
		}

		launch()
		first, stop := context.WithCancel(ctx)
		defer stop()
		lines, done := open(first, "", 60*time.Second)
		l := next("the first line", lines, done)
		if l.g.MembersDelta != nil || len(l.d.Kept) != 0 {
			t.Fatalf("first line: %+v, kept %v; want the whole list and every spec", l.g.MembersDelta, l.d.Kept)
		}
		for k := 2; k <= 3; k++ {
			launch()
			l = next("a launch", lines, done)
			if d := l.g.MembersDelta; d == nil || len(d.Added) != 1 || d.Added[0] != ips[k-1] || len(d.Removed) != 0 {
				t.Fatalf("launch %d: %+v; want a delta adding %s", k, d, ips[k-1])
			}
			if len(l.d.Kept) != k-1 {
				t.Fatalf("launch %d: kept %v; want the %d specs of the lines before", k, l.d.Kept, k-1)
			}
		}
		// A termination is a line too; the node's whole state is what a
		// node holding nothing is sent.
		if _, err := a.ec2.TerminateInstances(ctx, &sdk.TerminateInstancesInput{InstanceIds: []string{ids[0]}}); err != nil {
			t.Fatal(err)
		}
		ips = ips[1:]
		l = next("a termination", lines, done)
		fresh, err := c.Instances(ctx, "", 0)
		if err != nil {
			t.Fatal(err)
		}
		if fresh.ETag != l.d.ETag {
			t.Fatalf("after the termination the stream's state is %s, a node holding nothing is sent %s", l.d.ETag, fresh.ETag)
		}
		for _, sp := range l.d.Instances {
			if sp.InstanceID == ids[0] && sp.Desired != nodeapi.StateTerminated {
				t.Fatalf("%s desired %s after its termination", ids[0], sp.Desired)
			}
		}

		// The node going away ends the stream; a stream opened with the
		// last etag ends at its wait, without a line when nothing changed.
		stop()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("the stream ended with %v; want the node's cancel", err)
		}
		lines2, done2 := open(ctx, l.d.ETag, 2*time.Second)
		if err := <-done2; err != nil {
			t.Fatalf("a stream of an unchanged state ended with %v", err)
		}
		select {
		case l := <-lines2:
			t.Fatalf("an unchanged state was sent: %+v", l.d)
		default:
		}

		// Removed while its stream is open: the next wake-up ends the
		// stream without a line, and the node is refused after.
		lines3, done3 := open(ctx, l.d.ETag, 60*time.Second)
		waitForPoll(a.svc, node.id)
		if err := a.svc.RemoveNode(ctx, node.id); err != nil {
			t.Fatal(err)
		}
		a.svc.Notify(node.id)
		select {
		case <-done3:
		case <-time.After(20 * time.Second):
			t.Fatal("the stream of a removed node stayed open after a wake-up")
		}
		select {
		case l := <-lines3:
			t.Fatalf("a removed node was sent %+v", l.d)
		default:
		}
		var se *nodeapi.StatusError
		if err := c.InstancesStream(ctx, "", 2*time.Second, &held, func(nodeapi.Desired) error { return nil }); !errors.As(err, &se) || se.Code != http.StatusForbidden {
			t.Fatalf("a removed node's stream: %v; want 403", err)
		}
	})
}

// A change whose wake-up was lost (here: made without one) reaches the
// node at its stream's end, where the state is read once more; and a bad
// stream parameter is refused before anything is read.
func TestStreamRereadAndParameter(t *testing.T) {
	db := storetest.SQLite(t, nil)
	l := newMemLedger()
	svc := newService(t, db, l)
	// No periodic reread within the stream: its end is the one.
	svc.cfg.DesiredPoll = time.Minute
	url := serve(t, svc)
	ctx := context.Background()
	node := upNodeIn(t, svc, url)
	c := node.client(t, url)
	var held nodeapi.Held
	var got []nodeapi.Desired
	keep := func(d nodeapi.Desired) error { got = append(got, d); return nil }
	if err := c.InstancesStream(ctx, "", 0, &held, keep); err != nil || len(got) != 1 {
		t.Fatalf("a stream without a wait: %d lines (%v); want the state, once", len(got), err)
	}
	l.mu.Lock()
	l.specs[node.id] = []nodeapi.InstanceSpec{{InstanceID: "i-0a1b2c3d", Desired: nodeapi.StateRunning}}
	l.mu.Unlock()
	if err := c.InstancesStream(ctx, got[0].ETag, 2*time.Second, &held, keep); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || len(got[1].Instances) != 1 || got[1].Instances[0].InstanceID != "i-0a1b2c3d" {
		t.Fatalf("after a change without a wake-up the stream sent %d lines (%+v); want the change at its end", len(got)-1, got[1:])
	}

	for _, v := range []string{"yes", "2", "true"} {
		if code := rawQueryStatus(t, node.conf, url, nodeapi.QueryStream+"="+v); code != http.StatusBadRequest {
			t.Fatalf("stream=%s: %d; want 400", v, code)
		}
	}
	if code := rawQueryStatus(t, node.conf, url, nodeapi.QueryStream+"=0"); code != http.StatusOK {
		t.Fatalf("stream=0: %d; want 200", code)
	}
}
