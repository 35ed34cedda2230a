package cluster

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"ironbark/internal/nodeapi"
	"ironbark/internal/store"
	"ironbark/internal/store/storetest"
)

// BenchmarkServicePlace is a whole placement as RunInstances asks for it:
// the live nodes read from the store (SQLite), usage from the ledger (one
// whole read, as the controller's usage cache answers between its reads),
// and the cluster's policy, over 1,000 and 10,000 nodes in two clusters.
func BenchmarkServicePlace(b *testing.B) {
	for _, size := range []int{1000, 10000} {
		for _, policy := range []string{"GREEDY", "ROUNDROBIN", "POWERSAVE"} {
			b.Run(fmt.Sprintf("%s/%d", policy, size), func(b *testing.B) { benchPlace(b, policy, size) })
		}
	}
}

func benchPlace(b *testing.B, policy string, size int) {
	ctx := context.Background()
	db := storetest.SQLite(b, nil)
	l := newMemLedger()
	s, err := New(ctx, Config{DB: db, DataDir: b.TempDir(), Ledger: l, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	addNodes(b, s, db, policy, size)
	small := nodeapi.VMType{Name: "m1.small", Cores: 1, MemoryMiB: 256, DiskGiB: 5}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, _, err := s.Place(ctx, "", small, 1); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "placements/s")
}

func addNodes(b *testing.B, s *Service, db *store.DB, policy string, n int) {
	ctx := context.Background()
	for _, c := range []string{"zone-a", "zone-b"} {
		if err := s.AddCluster(ctx, c, policy); err != nil {
			b.Fatal(err)
		}
	}
	now := time.Now().UnixMilli()
	err := db.InTx(ctx, func(tx *store.Tx) error {
		for i := 0; i < n; i++ {
			// As enrollment inserts them: declared and approved as offered, reviewed.
			_, err := tx.Exec(ctx, `INSERT INTO nodes (`+nodeCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1)`,
				fmt.Sprintf("node-%05d", i), []string{"zone-a", "zone-b"}[i%2], "h", 64, 262144, 2000,
				"qemu:///system", "1", now, now+int64(time.Hour/time.Millisecond), NodeUp, 64, 262144, 2000, 64, 262144, 2000)
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	// Some nodes busy, so POWERSAVE has something to pack onto.
	l := s.cfg.Ledger.(*memLedger)
	for i := 0; i < n; i += 7 {
		l.usage[fmt.Sprintf("node-%05d", i)] = nodeapi.NodeUsage{Cores: 4, MemoryMiB: 1024, DiskGiB: 20, Instances: 4}
	}
	l.freeze()
}
