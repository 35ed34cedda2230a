package cluster

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strings"
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

// fakeClock is a settable clock for memberHistory.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func list(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("10.0.%d.%d", i/250, 1+i%250)
	}
	return out
}

// A node holding a list this controller recorded gets the change to the
// newest; one holding a list it never saw (or forgot) gets none, and so
// the whole list.
func TestMemberHistoryDelta(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1000, 0)}
	h := newMemberHistory(clk.now)
	v1, l1 := nodeapi.MembersVersion(list(3)), list(3)
	l2 := append(list(3), "10.9.0.1")
	v2 := nodeapi.MembersVersion(l2)
	h.record("sg-1", v1, l1)
	h.record("sg-1", v2, l2)
	d, ok := h.delta("sg-1", v1, v2)
	if !ok || d.Base != v1 || !slices.Equal(d.Added, []string{"10.9.0.1"}) || len(d.Removed) != 0 {
		t.Fatalf("delta v1->v2: %+v %v", d, ok)
	}
	// The reverse (a node ahead: another controller saw a later list
	// first, then it went back) works too: both are held.
	if d, ok := h.delta("sg-1", v2, v1); !ok || !slices.Equal(d.Removed, []string{"10.9.0.1"}) {
		t.Fatalf("delta v2->v1: %+v %v", d, ok)
	}
	// Unchanged: an empty delta, even for a group never recorded.
	if d, ok := h.delta("sg-9", v1, v1); !ok || d.Base != v1 || d.Added != nil || d.Removed != nil {
		t.Fatalf("same version: %+v %v", d, ok)
	}
	if _, ok := h.delta("sg-1", "not-held", v2); ok {
		t.Fatal("a delta from a version never recorded")
	}
	if _, ok := h.delta("sg-2", v1, v2); ok {
		t.Fatal("a delta for a group never recorded")
	}
	// A replaced list is kept for snapshotKeep, then forgotten; the newest
	// stays however old.
	clk.t = clk.t.Add(snapshotKeep + time.Second)
	if _, ok := h.delta("sg-1", v1, v2); ok {
		t.Fatal("a list replaced long ago is still a base")
	}
	if g, l := h.size(); g != 1 || l != 1 {
		t.Fatalf("after the keep time: %d groups, %d lists; want the newest only", g, l)
	}
	l3 := append(slices.Clone(l2), "10.9.0.2")
	v3 := nodeapi.MembersVersion(l3)
	h.record("sg-1", v3, l3)
	if d, ok := h.delta("sg-1", v2, v3); !ok || !slices.Equal(d.Added, []string{"10.9.0.2"}) {
		t.Fatalf("from the newest after a quiet spell: %+v %v", d, ok)
	}
}

// Memory is bounded: lists per group and groups.
func TestMemberHistoryBounded(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1000, 0)}
	h := newMemberHistory(clk.now)
	h.maxGroups = 10
	var versions []string
	for i := range 3 * maxSnapshots {
		l := list(i + 1)
		v := nodeapi.MembersVersion(l)
		versions = append(versions, v)
		h.record("sg-1", v, l)
		// Every base asked for is cached as a delta; the cache is bounded
		// too.
		if i > 0 {
			h.delta("sg-1", versions[i-1], v)
		}
	}
	if g, l := h.size(); g != 1 || l != maxSnapshots {
		t.Fatalf("%d groups, %d lists after %d changes; want 1 and %d", g, l, 3*maxSnapshots, maxSnapshots)
	}
	if _, ok := h.delta("sg-1", versions[0], versions[len(versions)-1]); ok {
		t.Fatal("the oldest list is still a base past the cap")
	}
	if _, ok := h.delta("sg-1", versions[len(versions)-maxSnapshots], versions[len(versions)-1]); !ok {
		t.Fatal("the oldest list within the cap is no base")
	}
	for i := range 100 {
		clk.t = clk.t.Add(time.Millisecond)
		h.record(fmt.Sprintf("sg-g%d", i), versions[0], list(1))
	}
	if g, _ := h.size(); g > 10 {
		t.Fatalf("%d groups kept, bound 10", g)
	}
	// The group used last is among those kept.
	if _, ok := h.delta("sg-g99", versions[0], versions[0]); !ok {
		t.Fatal("the newest group was evicted")
	}
	h.mu.Lock()
	_, kept := h.groups["sg-g99"]
	h.mu.Unlock()
	if !kept {
		t.Fatal("the most recently used group was evicted")
	}
}

// nodeAt is one node's view of two controllers: the same certificate,
// one client per controller, as a node behind a balancer that sends its
// polls to either.
type nodeAt struct {
	id   string
	conf *tls.Config
}

func enrollFor(t *testing.T, url, token string) nodeAt {
	t.Helper()
	resp, tc := enrollTLS(t, url, token, "host-m", nodeapi.Capacity{Cores: 16, MemoryMiB: 16384, DiskGiB: 500})
	return nodeAt{id: resp.NodeID, conf: tc}
}

// upNodeIn adds cluster c1 to svc and one node to it, enrolled and up (a
// heartbeat, so placement picks it) through the node API at url.
func upNodeIn(t *testing.T, svc *Service, url string) nodeAt {
	t.Helper()
	ctx := context.Background()
	if err := svc.AddCluster(ctx, "c1", "GREEDY"); err != nil {
		t.Fatal(err)
	}
	token, err := svc.NewToken(ctx, svc.CA(), "c1", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	node := enrollFor(t, url, token)
	if _, err := node.client(t, url).Heartbeat(ctx, nodeapi.HeartbeatRequest{Hostname: "host-m", Full: true,
		Capacity: nodeapi.Capacity{Cores: 16, MemoryMiB: 16384, DiskGiB: 500}}); err != nil {
		t.Fatal(err)
	}
	return node
}

func (n nodeAt) client(t *testing.T, url string) *nodeapi.Client {
	c := nodeapi.NewClient(url, n.conf)
	t.Cleanup(c.Close)
	return c
}

// The node API sends a changed member list as a delta to the list the
// node holds, with two controllers on one store: a delta from one, the
// next poll to the other (which never sent that list: the whole list),
// then to it again (a delta), an agent restart (whole lists), and a long
// poll woken by a launch. Every answer gives the node the same lists as a
// node holding nothing gets, and the same ETag as either controller gives
// for that state.
func TestMemberDeltasAcrossControllers(t *testing.T) {
	storetest.Each(t, controller.Migrations(), func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		admin, image := adminAndImage(t, db, "member-deltas")
		dataDir := t.TempDir()
		a := startControllerIn(t, db.URL(), db.KeyFile(), admin, dataDir)
		b := startControllerIn(t, db.URL(), db.KeyFile(), admin, dataDir)
		urlA, urlB := serve(t, a.svc), serve(t, b.svc)
		node := upNodeIn(t, a.svc, urlA)
		atA, atB := node.client(t, urlA), node.client(t, urlB)
		var ips, ids []string
		launch := func(through *controllerOn) {
			t.Helper()
			out, err := through.ec2.RunInstances(ctx, &sdk.RunInstancesInput{ImageId: aws.String(image),
				InstanceType: types.InstanceType("m1.small"), MinCount: aws.Int32(1), MaxCount: aws.Int32(1)})
			if err != nil {
				t.Fatal(err)
			}
			ip := aws.ToString(out.Instances[0].PrivateIpAddress)
			if ip == "" {
				t.Fatal("launched without a private address")
			}
			ips = append(ips, ip)
			ids = append(ids, aws.ToString(out.Instances[0].InstanceId))
		}
		var held nodeapi.Held
		// ask asks c with the held lists and specs and checks the default
		// group's list and the instances against the launches; it returns
		// the answer and the group as it came (whole, or a delta).
		ask := func(c *nodeapi.Client, etag string, wait time.Duration) (nodeapi.Desired, nodeapi.SecurityGroup) {
			t.Helper()
			d, err := c.InstancesHeld(ctx, etag, wait, &held)
			if err != nil {
				t.Fatal(err)
			}
			if err := sameMembers(d, ips); err != nil {
				t.Fatal(err)
			}
			if err := sameSpecs(d, ids); err != nil {
				t.Fatal(err)
			}
			return d, d.SecurityGroups[0]
		}
		// kept checks how many specs the answer named without sending.
		kept := func(step string, d nodeapi.Desired, n int) {
			t.Helper()
			if len(d.Kept) != n {
				t.Fatalf("%s: kept %v; want %d specs kept", step, d.Kept, n)
			}
		}
		whole := func(step string, g nodeapi.SecurityGroup) {
			t.Helper()
			if g.MembersDelta != nil {
				t.Fatalf("%s: a delta %+v; want the whole list", step, g.MembersDelta)
			}
		}
		delta := func(step string, g nodeapi.SecurityGroup, added, removed int) {
			t.Helper()
			if g.MembersDelta == nil || len(g.MembersDelta.Added) != added || len(g.MembersDelta.Removed) != removed {
				t.Fatalf("%s: %+v; want a delta of %d added, %d removed", step, g.MembersDelta, added, removed)
			}
		}

		launch(a)
		d, g := ask(atA, "", 0)
		whole("nothing held", g)
		kept("nothing held", d, 0)
		launch(a)
		d, g = ask(atA, d.ETag, 0)
		delta("a launch, the same controller", g, 1, 0)
		kept("a launch, the same controller", d, 1)
		// The next poll reaches controller b, which never answered that
		// list: the whole list; specs are named by content, so b keeps
		// the ones the node holds.
		launch(b)
		d, g = ask(atB, d.ETag, 0)
		whole("the other controller, which never sent the base", g)
		kept("the other controller", d, 2)
		launch(a)
		d, g = ask(atB, d.ETag, 0)
		delta("the other controller, which sent the base", g, 1, 0)
		kept("the other controller again", d, 3)
		// a never answered this list either, but it is the current one:
		// an empty delta.
		d, g = ask(atA, d.ETag, 0)
		delta("unchanged, on the controller that never sent it", g, 0, 0)
		// Unchanged: a waiting poll is not answered at once with another
		// ETag (a second-long wait ends with the same one), and both
		// controllers give a node holding nothing that ETag and the list.
		d2, g := ask(atB, d.ETag, time.Second)
		if d2.ETag != d.ETag {
			t.Fatalf("unchanged state, etag %s then %s", d.ETag, d2.ETag)
		}
		delta("unchanged, waited", g, 0, 0)
		for _, c := range []*nodeapi.Client{atA, atB} {
			w, err := c.Instances(ctx, "", 0)
			if err != nil {
				t.Fatal(err)
			}
			if w.ETag != d.ETag || w.SecurityGroups[0].MembersDelta != nil {
				t.Fatalf("a node holding nothing: etag %s (held node %s), %+v", w.ETag, d.ETag, w.SecurityGroups[0])
			}
			if err := sameMembers(w, ips); err != nil {
				t.Fatal(err)
			}
			// The specs kept are the ones a node holding nothing is sent.
			slices.SortFunc(w.Instances, func(x, y nodeapi.InstanceSpec) int { return strings.Compare(x.InstanceID, y.InstanceID) })
			if !reflect.DeepEqual(w.Instances, d2.Instances) || len(w.Kept) != 0 {
				t.Fatalf("a node holding nothing is sent specs %+v (kept %v); the node holding them has %+v", w.Instances, w.Kept, d2.Instances)
			}
		}
		// A base the controller does not hold (made up here) gets the
		// whole list.
		raw := rawQuery(t, node.conf, urlB, nodeapi.QueryMembers+"="+g.ID+":0123456789abcdef01234567")
		if err := sameMembers(raw, ips); err != nil || raw.SecurityGroups[0].MembersDelta != nil {
			t.Fatalf("a base b does not hold: %+v %v", raw.SecurityGroups[0], err)
		}
		if rawBad := rawQueryStatus(t, node.conf, urlB, nodeapi.QueryMembers+"=no-version"); rawBad != http.StatusBadRequest {
			t.Fatalf("a malformed members parameter: %d", rawBad)
		}
		// A spec held at another version is sent whole; a malformed specs
		// parameter is refused.
		current := ""
		for _, sp := range d2.Instances {
			if sp.InstanceID == ids[1] {
				current = sp.Version
			}
		}
		rawSpecs := rawQuery(t, node.conf, urlB, nodeapi.QuerySpecs+"="+ids[0]+":0123456789abcdef,"+ids[1]+":"+current)
		if len(rawSpecs.Kept) != 1 || rawSpecs.Kept[0] != ids[1] || len(rawSpecs.Instances) != len(ids)-1 {
			t.Fatalf("specs held at a stale and the current version: kept %v, sent %d specs", rawSpecs.Kept, len(rawSpecs.Instances))
		}
		if code := rawQueryStatus(t, node.conf, urlB, nodeapi.QuerySpecs+"=no-version"); code != http.StatusBadRequest {
			t.Fatalf("a malformed specs parameter: %d", code)
		}

		// The agent restarts: it holds nothing, asks without an ETag, and
		// gets whole lists.
		held = nodeapi.Held{}
		d, g = ask(atB, "", 0)
		whole("after a restart", g)
		kept("after a restart", d, 0)

		// A long poll on a, woken by a launch through a: a delta.
		got := make(chan nodeapi.Desired, 1)
		errc := make(chan error, 1)
		go func() {
			dd, err := atA.InstancesHeld(ctx, d.ETag, 60*time.Second, &held)
			if err != nil {
				errc <- err
				return
			}
			got <- dd
		}()
		waitForPoll(a.svc, node.id)
		launch(a)
		select {
		case err := <-errc:
			t.Fatal(err)
		case d = <-got:
		}
		if err := sameMembers(d, ips); err != nil {
			t.Fatal(err)
		}
		delta("a waiting poll woken by a launch", d.SecurityGroups[0], 1, 0)
		// The launch's address may be committed (and its group's nodes
		// woken) a moment before its placement on the node: then the
		// node learns of the instance at its next poll, as an agent does.
		for try := 0; sameSpecs(d, ids) != nil; try++ {
			if try == 3 {
				t.Fatal(sameSpecs(d, ids))
			}
			var err error
			if d, err = atA.InstancesHeld(ctx, d.ETag, 30*time.Second, &held); err != nil {
				t.Fatal(err)
			}
		}
		kept("a waiting poll woken by a launch", d, len(ids)-1)

		// A termination: the address leaves by a delta.
		if _, err := a.ec2.TerminateInstances(ctx, &sdk.TerminateInstancesInput{InstanceIds: []string{ids[0]}}); err != nil {
			t.Fatal(err)
		}
		ips = ips[1:]
		d, g = ask(atA, d.ETag, 0)
		delta("a termination", g, 0, 1)
		// The terminated instance's spec changed (desired terminated):
		// sent; the others kept.
		kept("a termination", d, len(ids)-1)
	})
}

// sameMembers checks that the answer's one group (the default, its own
// peer) lists want, whole and at its version.
func sameMembers(d nodeapi.Desired, want []string) error {
	if len(d.SecurityGroups) != 1 {
		return fmt.Errorf("groups %+v; want the default group (its own peer)", d.SecurityGroups)
	}
	g := d.SecurityGroups[0]
	w := slices.Clone(want)
	nodeapi.SortMembers(w)
	if !slices.Equal(g.Members, w) || g.MembersVersion != nodeapi.MembersVersion(w) {
		return fmt.Errorf("members %v (version %s); want %v", g.Members, g.MembersVersion, w)
	}
	return nil
}

// rawQuery asks for the desired state with a given query (the members
// or specs parameter), as bytes on the wire, not through nodeapi.Held.
func rawQuery(t *testing.T, conf *tls.Config, url, query string) nodeapi.Desired {
	t.Helper()
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: conf, ForceAttemptHTTP2: true}}
	defer hc.CloseIdleConnections()
	resp, err := hc.Get(url + nodeapi.PathInstances + "?" + query)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var d nodeapi.Desired
	if err := json.NewDecoder(resp.Body).Decode(&d); err != nil {
		t.Fatal(err)
	}
	return d
}

// rawQueryStatus is the status of a desired-state request with a given
// query.
func rawQueryStatus(t *testing.T, conf *tls.Config, url, query string) int {
	t.Helper()
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: conf, ForceAttemptHTTP2: true}}
	defer hc.CloseIdleConnections()
	resp, err := hc.Get(url + nodeapi.PathInstances + "?" + query)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// sameSpecs checks that the answer (after nodeapi.HeldSpecs.Apply) has
// one spec per launched instance, in instance order, each at its version.
func sameSpecs(d nodeapi.Desired, ids []string) error {
	want := slices.Clone(ids)
	slices.Sort(want)
	var got []string
	for _, sp := range d.Instances {
		got = append(got, sp.InstanceID)
		if sp.Version != nodeapi.SpecVersion(sp) {
			return fmt.Errorf("spec of %s is version %s, named %s", sp.InstanceID, nodeapi.SpecVersion(sp), sp.Version)
		}
	}
	if !slices.Equal(got, want) {
		return fmt.Errorf("instances %v; want %v", got, want)
	}
	return nil
}
