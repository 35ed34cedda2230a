package store

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
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
		if db.ckpt.idle() {
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

// Every connection has SQLite's automatic checkpoints off: the commits of
// the pool's transactions and statements are checkpointed in the
// background, so the database file receives what they wrote, and the WAL
// starts over after a burst as a pinned connection's does.
func TestPoolCommitsCheckpointInBackground(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "db.sqlite")
	db, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var auto int
	if err := db.QueryRow(ctx, `PRAGMA wal_autocheckpoint`).Scan(&auto); err != nil || auto != 0 {
		t.Fatalf("wal_autocheckpoint = %d (%v): commits would checkpoint inline", auto, err)
	}
	if _, err := db.Exec(ctx, `CREATE TABLE kv (k TEXT PRIMARY KEY, v TEXT NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	before, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("x", 2000)
	for i := range 300 {
		if i%2 == 0 {
			err = db.InTx(ctx, func(tx *Tx) error {
				_, err := tx.Exec(ctx, `INSERT INTO kv (k, v) VALUES (?, ?)`, fmt.Sprintf("a%04d", i), big)
				return err
			})
		} else {
			_, err = db.Exec(ctx, `INSERT INTO kv (k, v) VALUES (?, ?)`, fmt.Sprintf("a%04d", i), big)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	for deadline := time.Now().Add(30 * time.Second); !db.ckpt.idle(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the background checkpoint never settled")
		}
	}
	after, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if after.Size() < before.Size()+300*2000 {
		t.Fatalf("database file grew from %d to %d bytes with 600 KB committed: the WAL was not checkpointed", before.Size(), after.Size())
	}
	if _, err := db.Exec(ctx, `INSERT INTO kv (k, v) VALUES ('b', 'b')`); err != nil {
		t.Fatal(err)
	}
	var busy, frames, done int
	if err := db.QueryRow(ctx, `PRAGMA wal_checkpoint(PASSIVE)`).Scan(&busy, &frames, &done); err != nil {
		t.Fatal(err)
	}
	if frames > 20 {
		t.Fatalf("the WAL holds %d frames after one commit following the burst: it did not start over", frames)
	}
}

// A WAL that grew past walKeepBytes between completed checkpoints is cut
// back to it when it starts over.
func TestWALCutBackWhenItStartsOver(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "db.sqlite")
	db, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(ctx, `CREATE TABLE kv (k TEXT PRIMARY KEY, v TEXT NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	// One transaction of 12 MiB: the WAL grows past the limit before any
	// checkpoint can run.
	big := strings.Repeat("x", 1<<20)
	err = db.InTx(ctx, func(tx *Tx) error {
		for i := range 12 {
			if _, err := tx.Exec(ctx, `INSERT INTO kv (k, v) VALUES (?, ?)`, fmt.Sprintf("k%02d", i), big); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	wal := path + "-wal"
	if st, err := os.Stat(wal); err != nil || st.Size() <= walKeepBytes {
		t.Fatalf("WAL after 12 MiB committed: %v %v", st, err)
	}
	for deadline := time.Now().Add(30 * time.Second); !db.ckpt.idle(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the background checkpoint never settled")
		}
	}
	// The next write starts the WAL over, and cuts it back.
	if _, err := db.Exec(ctx, `INSERT INTO kv (k, v) VALUES ('b', 'b')`); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(wal)
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() > walKeepBytes {
		t.Fatalf("WAL is %d bytes after it started over, want at most %d", st.Size(), walKeepBytes)
	}
}
