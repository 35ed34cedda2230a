package cluster

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"ironbark/internal/nodeapi"
	"ironbark/internal/store"
	"ironbark/internal/store/storetest"
)

// sgLedger is memLedger with security groups: it records the fresh time
// each answer was asked to read after.
type sgLedger struct {
	*memLedger
	mu     sync.Mutex
	freshs []time.Time
}

func (l *sgLedger) SecurityGroupsOnNode(_ context.Context, _ string, _ []nodeapi.InstanceSpec, fresh time.Time) ([]nodeapi.SecurityGroup, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.freshs = append(l.freshs, fresh)
	return nil, nil
}

func (l *sgLedger) reads() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.freshs)
}

func (l *sgLedger) lastFresh() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.freshs[len(l.freshs)-1]
}

// NotifySoon wakes a waiting request as Notify does (shortly after, with
// the others told meanwhile), and the answer it gives is built from reads
// that start after the wake-up, so after the change that was notified.
func TestNotifySoonWakes(t *testing.T) {
	storetest.Each(t, nil, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		l := &sgLedger{memLedger: newMemLedger()}
		s := newService(t, db, l)
		// Only a wake-up answers a waiting request here.
		s.cfg.DesiredPoll = time.Hour
		url := serve(t, s)
		if err := s.AddCluster(ctx, "zone-a", "GREEDY"); err != nil {
			t.Fatal(err)
		}
		tok, err := s.NewToken(ctx, s.CA(), "zone-a", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		c, er := enrollNode(t, url, tok)
		d, err := c.Instances(ctx, "", 0)
		if err != nil {
			t.Fatal(err)
		}
		for round := range 3 {
			got := make(chan nodeapi.Desired, 1)
			go func() {
				d2, err := c.Instances(ctx, d.ETag, 60*time.Second)
				if err != nil {
					t.Error(err)
				}
				got <- d2
			}()
			// The request has read (and found nothing new): it waits.
			for s.parkedRequests() != 1 {
				time.Sleep(2 * time.Millisecond)
			}
			id := []string{"i-a", "i-b", "i-c"}[round]
			l.mu.Lock()
			l.specs[er.NodeID] = append(l.specs[er.NodeID], nodeapi.InstanceSpec{InstanceID: id, Desired: nodeapi.StateRunning})
			l.mu.Unlock()
			changed := time.Now()
			// A burst: the node told several times, other nodes too
			// (one with no request waiting).
			for range 5 {
				s.NotifySoon(er.NodeID)
				s.NotifySoon("node-elsewhere")
			}
			d = <-got
			if len(d.Instances) != round+1 || d.Instances[round].InstanceID != id {
				t.Fatalf("round %d: the woken request answered %+v", round, d.Instances)
			}
			if f := l.lastFresh(); f.Before(changed) {
				t.Fatalf("round %d: the answer may use reads from before the change (fresh %v, changed %v)", round, f, changed)
			}
		}
	})
}

// A request woken for member lists only waits for a rebuild turn; one
// woken for more (Notify: a launch onto its node) goes at once, also while
// it waits for a turn and every turn is taken.
func TestRebuildTurns(t *testing.T) {
	storetest.Each(t, nil, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		l := &sgLedger{memLedger: newMemLedger()}
		s := newService(t, db, l)
		s.cfg.DesiredPoll = time.Hour
		url := serve(t, s)
		if err := s.AddCluster(ctx, "zone-a", "GREEDY"); err != nil {
			t.Fatal(err)
		}
		tok, err := s.NewToken(ctx, s.CA(), "zone-a", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		c, er := enrollNode(t, url, tok)
		d, err := c.Instances(ctx, "", 0)
		if err != nil {
			t.Fatal(err)
		}
		takeAll := func() {
			for range cap(s.rebuilds) {
				s.rebuilds <- struct{}{}
			}
		}
		freeAll := func() {
			for range cap(s.rebuilds) {
				<-s.rebuilds
			}
		}
		add := func(id string) {
			l.mu.Lock()
			l.specs[er.NodeID] = append(l.specs[er.NodeID], nodeapi.InstanceSpec{InstanceID: id, Desired: nodeapi.StateRunning})
			l.mu.Unlock()
		}
		for _, full := range []bool{false, true} {
			got := make(chan nodeapi.Desired, 1)
			go func() {
				d2, err := c.Instances(ctx, d.ETag, 60*time.Second)
				if err != nil {
					t.Error(err)
				}
				got <- d2
			}()
			for s.parkedRequests() != 1 {
				time.Sleep(2 * time.Millisecond)
			}
			takeAll()
			add(fmt.Sprintf("i-%d", len(d.Instances)))
			s.wakeMembers(er.NodeID)
			for s.waitingTurns() != 1 {
				time.Sleep(2 * time.Millisecond)
			}
			select {
			case d2 := <-got:
				t.Fatalf("answered %+v without a turn", d2.Instances)
			default:
			}
			if full {
				s.Notify(er.NodeID) // a launch onto the node
				d = <-got
				freeAll()
			} else {
				freeAll()
				d = <-got
			}
			if len(d.Instances) != len(l.specs[er.NodeID]) {
				t.Fatalf("full wake-up %v: answered %d instances, want %d", full, len(d.Instances), len(l.specs[er.NodeID]))
			}
			if n := s.waitingTurns(); n != 0 {
				t.Fatalf("%d requests still wait for a turn", n)
			}
			if len(s.rebuilds) != 0 {
				t.Fatalf("%d turns still held after the answer", len(s.rebuilds))
			}
		}
	})
}

// A node that asks again with the ETag this controller just answered it
// waits without a read; one that asks after a wake-up that came since
// (here: before it asked) is read, and answered at once.
func TestRepollWaitsWithoutRead(t *testing.T) {
	storetest.Each(t, nil, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		l := &sgLedger{memLedger: newMemLedger()}
		s := newService(t, db, l)
		s.cfg.DesiredPoll = time.Hour
		url := serve(t, s)
		if err := s.AddCluster(ctx, "zone-a", "GREEDY"); err != nil {
			t.Fatal(err)
		}
		tok, err := s.NewToken(ctx, s.CA(), "zone-a", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		c, er := enrollNode(t, url, tok)
		d, err := c.Instances(ctx, "", 0)
		if err != nil {
			t.Fatal(err)
		}
		add := func(id string) {
			l.mu.Lock()
			l.specs[er.NodeID] = append(l.specs[er.NodeID], nodeapi.InstanceSpec{InstanceID: id, Desired: nodeapi.StateRunning})
			l.mu.Unlock()
		}
		// Asked again with the answer's ETag: it waits, unread, until a
		// launch wakes it.
		before := l.reads()
		got := make(chan nodeapi.Desired, 1)
		go func() {
			d2, err := c.Instances(ctx, d.ETag, 60*time.Second)
			if err != nil {
				t.Error(err)
			}
			got <- d2
		}()
		for s.parkedRequests() != 1 {
			time.Sleep(2 * time.Millisecond)
		}
		if n := l.reads() - before; n != 0 {
			t.Fatalf("a node asking again with the ETag just answered was read %d times before it waited", n)
		}
		add("i-a")
		s.Notify(er.NodeID)
		d = <-got
		if len(d.Instances) != 1 {
			t.Fatalf("woken request answered %+v", d.Instances)
		}
		// A change and its wake-up between the answer and the next
		// request: the request reads, and answers at once.
		add("i-b")
		s.Notify(er.NodeID)
		d, err = c.Instances(ctx, d.ETag, 60*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if len(d.Instances) != 2 {
			t.Fatalf("a request after a wake-up answered %+v, want both instances", d.Instances)
		}
	})
}
