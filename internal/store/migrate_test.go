package store_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"ironbark/internal/store"
	"ironbark/internal/store/storetest"
)

// A migration that a unique index cannot take on existing rows fails, and
// says which migration; it is not recorded as applied.
func TestMigrateFailsLoudlyOnUniqueViolation(t *testing.T) {
	storetest.Each(t, testSchema, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		for _, k := range []string{"a", "b"} {
			if _, err := db.Exec(ctx, `INSERT INTO kv (k, v) VALUES (?, 7)`, k); err != nil {
				t.Fatal(err)
			}
		}
		uniq := []store.Migration{{ID: "storetest/0002-unique-v", SQL: `CREATE UNIQUE INDEX kv_v_unique ON kv (v)`}}
		err := db.Migrate(ctx, uniq)
		if err == nil || !strings.Contains(err.Error(), "storetest/0002-unique-v") || !store.IsUniqueViolation(err) {
			t.Fatalf("migrate onto duplicates: got %v, want a unique violation naming the migration", err)
		}
		var n int
		if err := db.QueryRow(ctx, `SELECT COUNT(*) FROM schema_migrations WHERE id = ?`, uniq[0].ID).Scan(&n); err != nil || n != 0 {
			t.Fatalf("failed migration recorded: n=%d err=%v", n, err)
		}
		// Fixed data, and the same migration applies.
		if _, err := db.Exec(ctx, `UPDATE kv SET v = 8 WHERE k = 'b'`); err != nil {
			t.Fatal(err)
		}
		if err := db.Migrate(ctx, uniq); err != nil {
			t.Fatalf("after fixing the rows: %v", err)
		}
	})
}

// Several processes migrating one database at once all succeed, and each
// migration runs once.
func TestMigrateConcurrently(t *testing.T) {
	schema := append([]store.Migration{}, testSchema...)
	schema = append(schema, store.Migration{ID: "storetest/0003-counter",
		SQL: `CREATE TABLE runs (n BIGINT NOT NULL); INSERT INTO runs (n) VALUES (1)`})
	storetest.Each(t, nil, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		url := db.URL()
		var wg sync.WaitGroup
		errs := make(chan error, 6)
		for i := 0; i < 6; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				h, err := store.Open(ctx, url)
				if err != nil {
					errs <- err
					return
				}
				defer h.Close()
				errs <- h.Migrate(ctx, schema)
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Errorf("concurrent migrate: %v", err)
			}
		}
		var n int
		if err := db.QueryRow(ctx, `SELECT COUNT(*) FROM runs`).Scan(&n); err != nil || n != 1 {
			t.Fatalf("migration ran %d times (err %v), want once", n, err)
		}
	})
}

// Errors are classified by the drivers' codes: text that reads like a
// constraint failure is not one.
func TestErrorsByCode(t *testing.T) {
	for _, s := range []string{"UNIQUE constraint failed: kv.k", "ERROR: duplicate key (SQLSTATE 23505)"} {
		if store.IsUniqueViolation(errors.New(s)) {
			t.Errorf("IsUniqueViolation(%q) = true for a plain error", s)
		}
	}
	storetest.Each(t, testSchema, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		if _, err := db.Exec(ctx, `INSERT INTO kv (k, v) VALUES ('a', 1)`); err != nil {
			t.Fatal(err)
		}
		_, err := db.Exec(ctx, `INSERT INTO kv (k, v) VALUES ('a', 2)`)
		if !store.IsUniqueViolation(fmt.Errorf("wrapped: %w", err)) {
			t.Fatalf("primary key violation: %v", err)
		}
		_, err = db.Exec(ctx, `INSERT INTO kv (k) VALUES ('c')`) // NOT NULL, not UNIQUE
		if err == nil || store.IsUniqueViolation(err) {
			t.Fatalf("not-null violation classified as unique: %v", err)
		}
	})
}
