package store_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"ironbark/internal/store"
	"ironbark/internal/store/storetest"
)

// reopen opens a second handle on db's database, as another controller
// process would.
func reopen(t *testing.T, db *store.DB) *store.DB {
	t.Helper()
	h, err := store.Open(context.Background(), db.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// terminate ends the PostgreSQL backends whose current or last query
// matches like, as a server restart or a network cut would.
func terminate(t *testing.T, db *store.DB, like string) int {
	t.Helper()
	var n int
	err := db.QueryRow(context.Background(), `SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE datname = current_database() AND pid <> pg_backend_pid() AND query LIKE ?`, like).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// A process listening on a channel hears what another publishes, and
// keeps hearing after its connection is cut (it reconnects and says so, so
// its caller can recheck what it missed).
func TestListenHearsOtherProcess(t *testing.T) {
	db := storetest.Postgres(t, testSchema)
	other := reopen(t, db)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	heard := make(chan string, 16)
	connected := make(chan struct{}, 16)
	lost := make(chan error, 16)
	done := make(chan error, 1)
	go func() {
		done <- other.Listen(ctx, "ironbark_test", store.ListenHandlers{
			Message:   func(p string) { heard <- p },
			Connected: func() { connected <- struct{}{} },
			Lost:      func(err error) { lost <- err },
		})
	}()
	expect := func(want string) {
		t.Helper()
		select {
		case got := <-heard:
			if got != want {
				t.Fatalf("heard %q, want %q", got, want)
			}
		case err := <-done:
			t.Fatalf("Listen returned %v", err)
		case <-time.After(30 * time.Second):
			t.Fatalf("nothing heard, want %q", want)
		}
	}
	<-connected
	if err := db.Publish(ctx, "ironbark_test", "node-1,node-2"); err != nil {
		t.Fatal(err)
	}
	expect("node-1,node-2")

	if n := terminate(t, db, "LISTEN %"); n != 1 {
		t.Fatalf("terminated %d listening backends, want 1", n)
	}
	select {
	case err := <-lost:
		t.Logf("lost as expected: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("the cut connection was not noticed")
	}
	<-connected
	if err := db.Publish(ctx, "ironbark_test", "after"); err != nil {
		t.Fatal(err)
	}
	expect("after")

	// A transaction's payload goes out when it commits, with its
	// after-commit work, and neither goes out if it rolls back.
	committed := 0
	if err := db.InTx(ctx, func(tx *store.Tx) error {
		if err := tx.Publish(ctx, "ironbark_test", "rolled back"); err != nil {
			return err
		}
		tx.AfterCommit(func() { committed++ })
		return errors.New("roll back")
	}); err == nil {
		t.Fatal("the rolled-back transaction committed")
	}
	if err := db.InTx(ctx, func(tx *store.Tx) error {
		if err := tx.Publish(ctx, "ironbark_test", "in a transaction"); err != nil {
			return err
		}
		tx.AfterCommit(func() { committed++ })
		select {
		case p := <-heard:
			return fmt.Errorf("heard %q before the commit", p)
		case <-time.After(200 * time.Millisecond):
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if committed != 1 {
		t.Fatalf("after-commit work ran %d times, want once", committed)
	}
	expect("in a transaction")

	// A transaction's payloads are sent together at its commit, more
	// than one statement's worth among them, and heard in the order
	// published.
	if err := db.InTx(ctx, func(tx *store.Tx) error {
		for i := range 250 {
			if err := tx.Publish(ctx, "ironbark_test", fmt.Sprintf("many-%03d", i)); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for i := range 250 {
		expect(fmt.Sprintf("many-%03d", i))
	}

	// Notifications published before a batch's final statement ride in
	// it: none is left for the commit, and they are heard once it
	// commits, in order, with the batch's writes done; a transaction that
	// rolls back after the batch sends none. More than one statement's
	// worth is left for the commit.
	batched := func(n int, fail bool) error {
		return db.InTx(ctx, func(tx *store.Tx) error {
			for i := range n {
				if err := tx.Publish(ctx, "ironbark_test", fmt.Sprintf("batched-%v-%d-%03d", fail, n, i)); err != nil {
					return err
				}
			}
			var b store.Batch
			b.Exec(ctx, `INSERT INTO kv (k, v) VALUES (?, ?) ON CONFLICT (k) DO UPDATE SET v = kv.v + 1`, "batched", 1)
			var one int
			if err := b.QueryRow(ctx, tx, `SELECT 1`, nil, &one); err != nil || one != 1 {
				return fmt.Errorf("batch: %d, %v", one, err)
			}
			if left, want := store.PendingNotes(tx), map[bool]int{true: 0, false: n}[n <= 100]; left != want {
				return fmt.Errorf("%d notifications left for the commit after the batch, want %d", left, want)
			}
			if fail {
				return errors.New("roll back")
			}
			return nil
		})
	}
	if err := batched(3, true); err == nil {
		t.Fatal("the rolled-back transaction committed")
	}
	for _, n := range []int{3, 101} {
		if err := batched(n, false); err != nil {
			t.Fatal(err)
		}
		for i := range n {
			expect(fmt.Sprintf("batched-false-%d-%03d", n, i))
		}
	}
	var v int
	if err := db.QueryRow(ctx, `SELECT v FROM kv WHERE k = 'batched'`).Scan(&v); err != nil || v != 2 {
		t.Fatalf("the batches' write: %d, %v; want 2", v, err)
	}

	long := make([]byte, store.MaxPayload+1)
	for i := range long {
		long[i] = 'x'
	}
	if err := db.Publish(ctx, "ironbark_test", string(long)); err == nil {
		t.Fatal("an oversized payload was published")
	}
	if err := db.InTx(ctx, func(tx *store.Tx) error { return tx.Publish(ctx, "ironbark_test", string(long)) }); !errors.Is(err, store.ErrPayloadTooLong) {
		t.Fatalf("an oversized payload in a transaction: %v; want ErrPayloadTooLong", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Listen after cancel: %v", err)
	}
}

// One process leads at a time; the lead passes on when the leader lets go
// or loses its connection, and a leader that lost it knows.
func TestLeaderOneAtATime(t *testing.T) {
	db := storetest.Postgres(t, testSchema)
	ctx := context.Background()
	a, b := reopen(t, db).Leader(), reopen(t, db).Leader()
	held := func(l *store.Leader) bool {
		t.Helper()
		ok, err := l.Held(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if !held(a) || held(b) || !held(a) {
		t.Fatal("want a to lead and b to follow")
	}
	a.Release(ctx)
	if !held(b) || held(a) {
		t.Fatal("after a released: want b to lead")
	}
	var n int
	if err := db.QueryRow(ctx, `SELECT COUNT(pg_terminate_backend(pid, 10000)) FROM pg_locks
		WHERE locktype = 'advisory' AND granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("terminated %d lock holders (%v), want 1", n, err)
	}
	if !held(a) {
		t.Fatal("after b's connection died: want a to lead")
	}
	if held(b) {
		t.Fatal("b still thinks it leads after losing its connection")
	}
}

// SQLite serves one controller: it always leads, publishing is a no-op,
// and there is nothing to listen to.
func TestSQLiteSingleController(t *testing.T) {
	db := storetest.SQLite(t, testSchema)
	ctx := context.Background()
	if db.CanNotify() {
		t.Fatal("SQLite claims to notify other processes")
	}
	if ok, err := db.Leader().Held(ctx); !ok || err != nil {
		t.Fatalf("Held = %v, %v; want true", ok, err)
	}
	if err := db.Publish(ctx, "ch", "x"); err != nil {
		t.Fatal(err)
	}
	if err := db.Listen(ctx, "ch", store.ListenHandlers{}); err != nil {
		t.Fatal(err)
	}
}
