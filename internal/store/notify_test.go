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
