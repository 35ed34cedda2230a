package cluster

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"ironbark/controller"
	"ironbark/internal/nodeapi"
	"ironbark/internal/store"
	"ironbark/internal/store/storetest"
)

// A node marked down records its silence from its last heartbeat, and
// its next heartbeat records its return, each in the transaction that
// changes the node's state.
func TestSilencesRecorded(t *testing.T) {
	storetest.Each(t, controller.Migrations(), func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		cloud, err := controller.New(controller.Config{}, db, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		now := time.Date(2026, 11, 2, 8, 0, 0, 0, time.UTC)
		s, err := New(ctx, Config{DB: db, DataDir: t.TempDir(), Ledger: cloud, Silences: cloud, Now: func() time.Time { return now },
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.AddCluster(ctx, "a", "GREEDY"); err != nil {
			t.Fatal(err)
		}
		id := addNode(t, s, "a", nodeapi.Capacity{Cores: 4, MemoryMiB: 2048, DiskGiB: 40})
		enrolled := now
		now = now.Add(10 * time.Minute)
		if ids, err := s.markDown(ctx, now.Add(-s.cfg.HeartbeatTimeout), s.cfg.Silences); err != nil || len(ids) != 1 {
			t.Fatalf("mark down: %v %v", ids, err)
		}
		now = now.Add(5 * time.Minute)
		n, err := s.Node(ctx, id)
		if err != nil || n.State != NodeDown {
			t.Fatalf("node %+v %v", n, err)
		}
		if ok, err := s.heartbeat(ctx, n, true, n.Hostname, "", nodeapi.Capacity{Cores: 4, MemoryMiB: 2048, DiskGiB: 40}, now, s.cfg.Silences); !ok || err != nil {
			t.Fatalf("heartbeat: %v %v", ok, err)
		}
		// A heartbeat of a node already up records nothing more.
		n, _ = s.Node(ctx, id)
		if _, err := s.heartbeat(ctx, n, true, n.Hostname, "", nodeapi.Capacity{Cores: 4, MemoryMiB: 2048, DiskGiB: 40}, now, s.cfg.Silences); err != nil {
			t.Fatal(err)
		}
		rows, err := db.Query(ctx, `SELECT at, state FROM usage_events WHERE kind = 'node' AND resource = ? ORDER BY seq`, id)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var got []string
		for rows.Next() {
			var at int64
			var state string
			if err := rows.Scan(&at, &state); err != nil {
				t.Fatal(err)
			}
			got = append(got, state+"@"+time.UnixMilli(at).UTC().Sub(enrolled).String())
		}
		if len(got) != 2 || got[0] != "down@0s" || got[1] != "up@15m0s" {
			t.Fatalf("node events %v, want down at its last heartbeat and up 15m later", got)
		}
	})
}
