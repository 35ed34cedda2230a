package store_test

import (
	"context"
	"errors"
	"testing"

	"ironbark/internal/store"
	"ironbark/internal/store/storetest"
)

var testSchema = []store.Migration{
	{ID: "storetest/0001", SQL: `CREATE TABLE kv (k TEXT PRIMARY KEY, v BIGINT NOT NULL, note TEXT NOT NULL DEFAULT '?');
		CREATE INDEX kv_v ON kv (v)`},
}

func TestEngines(t *testing.T) {
	storetest.Each(t, testSchema, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		if _, err := db.Exec(ctx, `INSERT INTO kv (k, v) VALUES (?, ?)`, "a", 1); err != nil {
			t.Fatal(err)
		}
		_, err := db.Exec(ctx, `INSERT INTO kv (k, v) VALUES (?, ?)`, "a", 2)
		if !store.IsUniqueViolation(err) {
			t.Fatalf("duplicate insert: got %v, want unique violation", err)
		}
		// A failed transaction leaves nothing behind.
		boom := errors.New("boom")
		err = db.InTx(ctx, func(tx *store.Tx) error {
			if _, err := tx.Exec(ctx, `INSERT INTO kv (k, v) VALUES (?, ?)`, "b", 3); err != nil {
				return err
			}
			return boom
		})
		if !errors.Is(err, boom) {
			t.Fatalf("InTx: %v", err)
		}
		var n int
		var note string
		if err := db.QueryRow(ctx, `SELECT COUNT(*) FROM kv WHERE k <> ?`, "a").Scan(&n); err != nil || n != 0 {
			t.Fatalf("rolled-back row visible: n=%d err=%v", n, err)
		}
		if err := db.QueryRow(ctx, `SELECT note FROM kv WHERE k = ?`, "a").Scan(&note); err != nil || note != "?" {
			t.Fatalf("quoted placeholder rebound: %q %v", note, err)
		}
		// Migrating again is a no-op.
		if err := db.Migrate(ctx, testSchema); err != nil {
			t.Fatal(err)
		}
	})
}

func TestStateSurvivesReopen(t *testing.T) {
	ctx := context.Background()
	path := t.TempDir() + "/ironbark.db"
	db, err := store.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Migrate(ctx, testSchema); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(ctx, `INSERT INTO kv (k, v) VALUES (?, ?)`, "x", 42); err != nil {
		t.Fatal(err)
	}
	db.Close()
	db, err = store.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var v int
	if err := db.QueryRow(ctx, `SELECT v FROM kv WHERE k = ?`, "x").Scan(&v); err != nil || v != 42 {
		t.Fatalf("after reopen: v=%d err=%v", v, err)
	}
}
