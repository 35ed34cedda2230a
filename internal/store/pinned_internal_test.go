package store

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

// After a burst of commits on a pinned connection, the checkpoint taken
// once they pause completes, so the next commit starts the WAL over
// instead of appending to it (the WAL stays the size of one burst).
func TestPinnedConnWALRestartsAfterBurst(t *testing.T) {
	ctx := context.Background()
	db, err := Open(ctx, filepath.Join(t.TempDir(), "db.sqlite"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(ctx, `CREATE TABLE kv (k TEXT PRIMARY KEY, v BIGINT NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	c := db.Pin(PinOptions{})
	put := func(k string) {
		t.Helper()
		err := c.InTx(ctx, func(q Querier) error {
			_, err := q.Exec(ctx, `INSERT INTO kv (k, v) VALUES (?, 1)`, k)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for i := range 300 {
		put(fmt.Sprintf("a%04d", i))
	}
	// Wait (a condition, not a duration) until no checkpoint is pending:
	// none running, no quiet timer armed, no commit left uncounted.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		c.mu.Lock()
		idle := c.commits == 0 && c.quiet == nil && len(c.ckpt) == 0
		c.mu.Unlock()
		if idle {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the background checkpoint never settled")
		}
	}
	put("b")
	var busy, frames, done int
	if err := db.QueryRow(ctx, `PRAGMA wal_checkpoint(PASSIVE)`).Scan(&busy, &frames, &done); err != nil {
		t.Fatal(err)
	}
	if frames > 20 {
		t.Fatalf("the WAL holds %d frames after one commit following the burst: it did not start over", frames)
	}
}
