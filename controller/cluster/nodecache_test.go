package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"ironbark/internal/nodeapi"
	"ironbark/internal/pki"
	"ironbark/internal/store"
	"ironbark/internal/store/storetest"
)

// TestNodeCacheSeesOtherWriters: the node API authenticates nodes from a
// cache, and what another process (the ironbark CLI, another controller)
// changes in the node's row still takes effect: a node marked down there
// comes back up with its silence recorded, a capacity approved there is
// not written over, a re-enrolled node's new certificate works at once
// and a removed node's heartbeat is refused at once.
func TestNodeCacheSeesOtherWriters(t *testing.T) {
	storetest.Each(t, nil, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		s := newService(t, db, newMemLedger())
		rec := &silenceLog{}
		s.cfg.Silences = rec
		url := serve(t, s)
		if err := s.AddCluster(ctx, "zone-a", "GREEDY"); err != nil {
			t.Fatal(err)
		}
		tok, err := s.NewToken(ctx, s.CA(), "zone-a", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		c, er := enrollNode(t, url, tok)
		beat := func() error {
			_, err := c.Heartbeat(ctx, nodeapi.HeartbeatRequest{Hypervisor: "test:///", Capacity: nodeapi.Capacity{Cores: 8, MemoryMiB: 8192, DiskGiB: 100}})
			return err
		}
		for range 2 { // the second is answered from the cache
			if err := beat(); err != nil {
				t.Fatal(err)
			}
		}
		if _, ok := s.nodes.get(er.NodeID, mustNode(t, s, er.NodeID).CertSerial); !ok {
			t.Fatal("the node is not cached after its heartbeats")
		}
		other, err := NewRegistry(ctx, db)
		if err != nil {
			t.Fatal(err)
		}

		// Marked down elsewhere: the next heartbeat brings it back up
		// through the whole update, which ends its silence.
		if _, err := other.markDown(ctx, time.Now().Add(time.Hour), rec); err != nil {
			t.Fatal(err)
		}
		if err := beat(); err != nil {
			t.Fatal(err)
		}
		if n := mustNode(t, s, er.NodeID); n.State != NodeUp {
			t.Fatalf("after a heartbeat of a node marked down elsewhere: state %s", n.State)
		}
		if got := rec.events(); len(got) != 2 || got[0] != "down "+er.NodeID || got[1] != "up "+er.NodeID {
			t.Fatalf("silences %v, want down and up", got)
		}

		// Approved elsewhere (it declared 8 cores, enrolled with 4): the
		// heartbeats that follow keep the approval.
		if _, err := other.ApproveNode(ctx, er.NodeID); err != nil {
			t.Fatal(err)
		}
		for range 2 {
			if err := beat(); err != nil {
				t.Fatal(err)
			}
		}
		if n := mustNode(t, s, er.NodeID); n.Capacity.Cores != 8 || !n.Reviewed {
			t.Fatalf("after approval elsewhere: %+v", n)
		}

		// Re-enrolled elsewhere (a new certificate, its serial now the
		// node's): the new certificate works at once, the old one is
		// refused at its next heartbeat.
		key, _ := pki.NewKey()
		csr, _ := pki.CSR(key, "host-a")
		certPEM, serial, err := s.CA().SignNode(csr, er.NodeID)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.Exec(ctx, `UPDATE nodes SET cert_serial = ? WHERE id = ?`, serial, er.NodeID); err != nil {
			t.Fatal(err)
		}
		kp, _ := pki.KeyPEM(key)
		cert, err := tls.X509KeyPair(certPEM, kp)
		if err != nil {
			t.Fatal(err)
		}
		tc, err := pki.ClientTLS(cert, []byte(er.CA))
		if err != nil {
			t.Fatal(err)
		}
		renewed := nodeapi.NewClient(url, tc)
		defer renewed.Close()
		if _, err := renewed.Heartbeat(ctx, nodeapi.HeartbeatRequest{Hypervisor: "test:///", Capacity: nodeapi.Capacity{Cores: 8, MemoryMiB: 8192, DiskGiB: 100}}); err != nil {
			t.Fatalf("heartbeat with the new certificate: %v", err)
		}
		var se *nodeapi.StatusError
		if err := beat(); !errors.As(err, &se) || se.Code != 403 {
			t.Fatalf("heartbeat with the replaced certificate: %v, want 403", err)
		}

		// Removed elsewhere: refused at the next heartbeat.
		if err := other.RemoveNode(ctx, er.NodeID); err != nil {
			t.Fatal(err)
		}
		if _, err := renewed.Heartbeat(ctx, nodeapi.HeartbeatRequest{Hypervisor: "test:///"}); !errors.As(err, &se) || se.Code != 403 {
			t.Fatalf("heartbeat of a node removed elsewhere: %v, want 403", err)
		}
	})
}

func mustNode(t *testing.T, s *Service, id string) Node {
	t.Helper()
	n, err := s.Node(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// silenceLog records the silences it is told of ("down ID", "up ID").
type silenceLog struct {
	mu  sync.Mutex
	got []string
}

func (l *silenceLog) NodeSilence(_ context.Context, _ *store.Tx, id string, down bool, _ time.Time) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if down {
		l.got = append(l.got, "down "+id)
	} else {
		l.got = append(l.got, "up "+id)
	}
	return nil
}

func (l *silenceLog) events() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.got)
}

// TestNodeSnapshotRefreshesBehind: placement's node snapshot, once past
// its TTL, is answered as it is while a background read refreshes it
// (the caller does not wait for the table); after invalidate the caller
// reads at once.
func TestNodeSnapshotRefreshesBehind(t *testing.T) {
	storetest.Each(t, nil, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		s := newService(t, db, newMemLedger())
		if err := s.AddCluster(ctx, "zone-a", "GREEDY"); err != nil {
			t.Fatal(err)
		}
		first := addNode(t, s, "zone-a", nodeapi.Capacity{Cores: 4, MemoryMiB: 4096, DiskGiB: 40})
		if nodes, err := s.nodesCached(ctx); err != nil || len(nodes) != 1 || nodes[0].ID != first {
			t.Fatalf("first read: %v %v", nodes, err)
		}
		// A node enrolled elsewhere (no invalidate here), and the
		// snapshot past its TTL.
		other, err := NewRegistry(ctx, db)
		if err != nil {
			t.Fatal(err)
		}
		second := addNodeVia(t, s, other)
		s.mu.Lock()
		s.snap.at = time.Now().Add(-snapshotTTL - time.Millisecond)
		s.mu.Unlock()
		if nodes, _ := s.nodesCached(ctx); len(nodes) != 1 {
			t.Fatalf("an expired snapshot: %d nodes, want the old snapshot's 1 while it refreshes", len(nodes))
		}
		deadline := time.Now().Add(10 * time.Second)
		for nodes, _ := s.nodesCached(ctx); len(nodes) != 2; nodes, _ = s.nodesCached(ctx) {
			if time.Now().After(deadline) {
				t.Fatalf("the background refresh never brought %s", second)
			}
			time.Sleep(5 * time.Millisecond)
		}

		// Removed here: invalidate, and the next caller reads.
		if err := s.RemoveNode(ctx, second); err != nil {
			t.Fatal(err)
		}
		s.invalidate()
		if nodes, _ := s.nodesCached(ctx); len(nodes) != 1 {
			t.Fatalf("after invalidate: %d nodes, want 1", len(nodes))
		}
	})
}

// addNodeVia enrolls a node through another registry (another process).
func addNodeVia(t *testing.T, s *Service, r *Registry) string {
	t.Helper()
	ctx := context.Background()
	tok, err := s.NewToken(ctx, s.CA(), "zone-a", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	n, err := r.enroll(ctx, enrollment{Token: tok, Hostname: "h2", Hypervisor: "test:///default",
		Capacity: nodeapi.Capacity{Cores: 4, MemoryMiB: 4096, DiskGiB: 40}}, time.Now(), func(string) (string, error) { return "2", nil })
	if err != nil {
		t.Fatal(err)
	}
	return n.ID
}
