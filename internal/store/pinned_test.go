package store_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"ironbark/internal/store"
	"ironbark/internal/store/storetest"
)

// A pinned connection's transactions commit (other handles see them at
// once), roll back on error (a unique violation inside one included),
// run one at a time from many goroutines, and stop at Close.
func TestPinnedConn(t *testing.T) {
	storetest.Each(t, testSchema, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		c := db.Pin(store.PinOptions{})
		put := func(k string, v int) error {
			return c.InTx(ctx, func(q store.Querier) error {
				_, err := q.Exec(ctx, `INSERT INTO kv (k, v) VALUES (?, ?)`, k, v)
				return err
			})
		}
		if err := put("a", 1); err != nil {
			t.Fatal(err)
		}
		var v int
		if err := db.QueryRow(ctx, `SELECT v FROM kv WHERE k = ?`, "a").Scan(&v); err != nil || v != 1 {
			t.Fatalf("committed row seen by the pool: %d %v", v, err)
		}
		if err := put("a", 2); !store.IsUniqueViolation(err) {
			t.Fatalf("duplicate: %v, want a unique violation", err)
		}
		boom := errors.New("boom")
		err := c.InTx(ctx, func(q store.Querier) error {
			if _, err := q.Exec(ctx, `INSERT INTO kv (k, v) VALUES (?, ?)`, "b", 2); err != nil {
				return err
			}
			var n int
			if err := q.QueryRow(ctx, `SELECT COUNT(*) FROM kv`).Scan(&n); err != nil || n != 2 {
				t.Errorf("inside the transaction: %d rows %v, want its own insert seen", n, err)
			}
			return boom
		})
		if !errors.Is(err, boom) {
			t.Fatalf("failed transaction: %v", err)
		}
		// Many goroutines, one transaction at a time, each a
		// read-modify-write: no update is lost.
		if err := put("n", 0); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for i := range 40 {
			wg.Go(func() {
				err := c.InTx(ctx, func(q store.Querier) error {
					var n int
					if err := q.QueryRow(ctx, `SELECT v FROM kv WHERE k = 'n'`).Scan(&n); err != nil {
						return err
					}
					if _, err := q.Exec(ctx, `UPDATE kv SET v = ? WHERE k = 'n'`, n+1); err != nil {
						return err
					}
					_, err := q.Exec(ctx, `INSERT INTO kv (k, v) VALUES (?, ?)`, fmt.Sprintf("k%d", i), i)
					return err
				})
				if err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		var n, rows int
		if err := db.QueryRow(ctx, `SELECT v FROM kv WHERE k = 'n'`).Scan(&n); err != nil || n != 40 {
			t.Fatalf("counter %d %v, want 40", n, err)
		}
		if err := db.QueryRow(ctx, `SELECT COUNT(*) FROM kv`).Scan(&rows); err != nil || rows != 42 {
			t.Fatalf("%d rows %v, want 42 (a, n, k0..k39; b rolled back)", rows, err)
		}
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		if err := put("z", 9); !errors.Is(err, store.ErrConnClosed) {
			t.Fatalf("after Close: %v", err)
		}
		// The DB's Close closes the Conns still open.
		c2 := db.Pin(store.PinOptions{})
		if err := c2.InTx(ctx, func(store.Querier) error { return nil }); err != nil {
			t.Fatal(err)
		}
		db.Close()
		if err := c2.InTx(ctx, func(store.Querier) error { return nil }); !errors.Is(err, store.ErrConnClosed) {
			t.Fatalf("after the DB's Close: %v", err)
		}
	})
}

// On SQLite the pinned connection leaves checkpoints to the background:
// after many commits the WAL has been copied to the database file, and
// everything committed is there after a reopen (with sync commits too).
func TestPinnedConnCheckpoints(t *testing.T) {
	for _, o := range []store.PinOptions{{}, {SyncCommits: true}} {
		t.Run(fmt.Sprintf("sync=%v", o.SyncCommits), func(t *testing.T) {
			ctx := context.Background()
			path := filepath.Join(t.TempDir(), "db.sqlite")
			db, err := store.Open(ctx, path)
			if err != nil {
				t.Fatal(err)
			}
			if err := db.Migrate(ctx, testSchema); err != nil {
				t.Fatal(err)
			}
			c := db.Pin(o)
			const commits = 300
			for i := range commits {
				err := c.InTx(ctx, func(q store.Querier) error {
					_, err := q.Exec(ctx, `INSERT INTO kv (k, v) VALUES (?, ?)`, fmt.Sprintf("k%04d", i), i)
					return err
				})
				if err != nil {
					t.Fatal(err)
				}
			}
			c.Close()
			// Pages reach the database file while the DB is open (SQLite
			// alone checkpoints only past 1,000 WAL pages, and here not
			// at all): waited for as a condition, the checkpoints run in
			// the background.
			for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
				st, err := os.Stat(path)
				if err != nil {
					t.Fatal(err)
				}
				if st.Size() > 8192 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("database file is %d bytes after %d commits: nothing was checkpointed", st.Size(), commits)
				}
			}
			db.Close()
			db, err = store.Open(ctx, path)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			var n int
			if err := db.QueryRow(ctx, `SELECT COUNT(*) FROM kv`).Scan(&n); err != nil || n != commits {
				t.Fatalf("after reopen: %d rows %v, want %d", n, err, commits)
			}
		})
	}
}
