package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	sdk "github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"libvirt.org/go/libvirt"

	"ironbark/images/blobstore"
	"ironbark/internal/nodeapi"
)

// TestControllerRestartMidLaunch stops the controller (listeners, loops,
// store) after RunInstances has answered and while the agent downloads the
// instance's image, and starts it again on the same SQLite file and node
// address: the instance runs, exactly one instance and one domain exist,
// and terminating it leaves nothing. Then the controller goes down while
// the guest runs: the guest goes on, and the agent, reconnected, still
// acts on the instance (reboot, terminate).
func TestControllerRestartMidLaunch(t *testing.T) {
	var slow atomic.Pointer[string] // blob path whose first download stalls halfway
	stalled := make(chan struct{}, 1)
	wrap := func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			p := slow.Load()
			if p == nil || r.URL.Path != *p || r.Header.Get("Range") != "" {
				h.ServeHTTP(w, r)
				return
			}
			slow.Store(nil) // only the first download stalls
			rec := &capture{header: http.Header{}}
			h.ServeHTTP(rec, r)
			w.Header().Set("Content-Length", fmt.Sprint(rec.buf.Len()))
			w.WriteHeader(http.StatusOK)
			w.Write(rec.buf.Bytes()[:rec.buf.Len()/2])
			w.(http.Flusher).Flush()
			stalled <- struct{}{}
			<-r.Context().Done() // the controller's shutdown ends it
		})
	}
	e := setup(t, wrap)
	work := filepath.Dir(e.state)
	a := e.startAgent(t, e.token(t))
	e.waitZone(t)
	emi := e.machineImage(t, e.initrd)
	d, err := blobstore.ParseDigest(fileDigest(t, filepath.Join(work, "root.img")))
	if err != nil {
		t.Fatal(err)
	}
	p := nodeapi.PathBlobs + "sha256/" + d.Hex()
	slow.Store(&p)

	id := e.run(t, emi) // answered: the instance is pending and stored
	select {
	case <-stalled:
	case <-time.After(stateWait):
		t.Fatal("the image download never started")
	}
	refused := a.logCount(t, "connection refused")
	e.stopController()
	a.waitLog(t, "connection refused", refused+1) // the agent noticed
	if ds := domainsUnder(t, e.uri, work); len(ds) != 0 {
		t.Fatalf("domains defined before the image was there: %v", ds)
	}
	e.openController(t)
	e.waitState(t, id, types.InstanceStateNameRunning, bootWait)
	e.waitMarker(t, id, marker, 1)
	e.assertOne(t, id)

	// Down while the guest runs: the guest does not notice.
	refused = a.logCount(t, "connection refused")
	e.stopController()
	a.waitLog(t, "connection refused", refused+1)
	assertActive(t, e.uri, id)
	e.openController(t)
	e.waitState(t, id, types.InstanceStateNameRunning, stateWait)
	e.assertOne(t, id)
	// The reconnected agent still owns the guest: it reboots it on
	// request (the marker shows twice) and terminates it.
	if _, err := e.ec2.RebootInstances(context.Background(), &sdk.RebootInstancesInput{InstanceIds: []string{id}}); err != nil {
		t.Fatalf("RebootInstances: %v", err)
	}
	e.waitMarker(t, id, marker, 2)
	e.waitState(t, id, types.InstanceStateNameRunning, stateWait)
	e.terminate(t, id)
	if ds := domainsUnder(t, e.uri, work); len(ds) != 0 {
		t.Fatalf("domains left: %v", ds)
	}
}

// assertOne checks that DescribeInstances knows exactly the one instance
// and libvirt has exactly its domain.
func (e *env) assertOne(t testing.TB, id string) {
	t.Helper()
	out, err := e.ec2.DescribeInstances(context.Background(), &sdk.DescribeInstancesInput{})
	if err != nil {
		t.Fatalf("DescribeInstances: %v", err)
	}
	var ids []string
	for _, r := range out.Reservations {
		for _, in := range r.Instances {
			ids = append(ids, aws.ToString(in.InstanceId))
		}
	}
	if len(ids) != 1 || ids[0] != id {
		t.Fatalf("DescribeInstances shows %v, want only %s", ids, id)
	}
	if ds := domainsUnder(t, e.uri, filepath.Dir(e.state)); len(ds) != 1 || ds[0] != id {
		t.Fatalf("libvirt has domains %v, want only %s", ds, id)
	}
}

func assertActive(t testing.TB, uri, id string) {
	t.Helper()
	c, err := libvirt.NewConnect(uri)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	d, err := c.LookupDomainByName(id)
	if err != nil {
		t.Fatalf("domain %s: %v", id, err)
	}
	defer d.Free()
	if ok, err := d.IsActive(); err != nil || !ok {
		t.Fatalf("domain %s not active while the controller is down (%v)", id, err)
	}
}

// logCount counts the occurrences of s in the agent's log so far.
func (a *agent) logCount(t testing.TB, s string) int {
	t.Helper()
	b, err := os.ReadFile(a.log)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Count(b, []byte(s))
}

// waitLog waits until s shows at least n times in the agent's log.
func (a *agent) waitLog(t testing.TB, s string, n int) {
	t.Helper()
	deadline := time.Now().Add(stateWait)
	for a.logCount(t, s) < n {
		if time.Now().After(deadline) {
			t.Fatalf("agent log never showed %q %d times", s, n)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
