package store_test

import (
	"context"
	"fmt"
	"testing"

	"ironbark/internal/store"
	"ironbark/internal/store/storetest"
)

// A batch's writes all take effect, in one transaction, with the
// statement that reads a row after them; more parameters than one
// statement binds go in several; a failing write fails the batch and
// leaves nothing.
func TestBatch(t *testing.T) {
	storetest.Each(t, testSchema, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		if _, err := db.Exec(ctx, `INSERT INTO kv (k, v) VALUES ('counter', 41), ('gone', 1), ('up', 1)`); err != nil {
			t.Fatal(err)
		}
		const n = 20000 // 40,000 parameters: two statements of rows
		args := make([]any, 0, 2*n)
		for i := range n {
			args = append(args, fmt.Sprintf("k%05d", i), i)
		}
		var got int64
		if err := db.InTx(ctx, func(tx *store.Tx) error {
			var b store.Batch
			b.Exec(ctx, `INSERT INTO kv (k, v) VALUES (?, ?)`, "a", 1)
			if err := store.ExecRows(ctx, &b, `INSERT INTO kv (k, v) VALUES`, 2, args, ""); err != nil {
				return err
			}
			b.Exec(ctx, `INSERT INTO kv (k, v) VALUES (?, ?) ON CONFLICT (k) DO UPDATE SET v = kv.v + excluded.v`, "up", 5)
			b.Exec(ctx, `DELETE FROM kv WHERE k = ?`, "gone")
			if b.Len() != 5 {
				t.Errorf("batch holds %d statements, want 5", b.Len())
			}
			return b.QueryRow(ctx, tx, `UPDATE kv SET v = v + ? WHERE k = ? RETURNING v`, []any{1, "counter"}, &got)
		}); err != nil {
			t.Fatal(err)
		}
		if got != 42 {
			t.Errorf("the batch's final statement returned %d, want 42", got)
		}
		var count, sum int64
		if err := db.QueryRow(ctx, `SELECT COUNT(*), SUM(v) FROM kv WHERE k LIKE 'k%'`).Scan(&count, &sum); err != nil {
			t.Fatal(err)
		}
		if count != n || sum != n*(n-1)/2 {
			t.Fatalf("%d rows summing to %d, want %d and %d", count, sum, n, n*(n-1)/2)
		}
		var up, gone int64
		if err := db.QueryRow(ctx, `SELECT v, (SELECT COUNT(*) FROM kv WHERE k = 'gone') FROM kv WHERE k = 'up'`).Scan(&up, &gone); err != nil {
			t.Fatal(err)
		}
		if up != 6 || gone != 0 {
			t.Errorf("after the batch 'up' is %d (want 6) and 'gone' is there %d times (want 0)", up, gone)
		}

		// A write that fails fails Run, and the transaction keeps none
		// of the batch.
		err := db.InTx(ctx, func(tx *store.Tx) error {
			var b store.Batch
			b.Exec(ctx, `INSERT INTO kv (k, v) VALUES (?, ?)`, "b", 1)
			b.Exec(ctx, `INSERT INTO kv (k, v) VALUES (?, ?)`, "a", 2)
			return b.Run(ctx, tx)
		})
		if !store.IsUniqueViolation(err) {
			t.Fatalf("a batch inserting an existing key: %v, want a unique violation", err)
		}
		var b int
		if err := db.QueryRow(ctx, `SELECT COUNT(*) FROM kv WHERE k = 'b'`).Scan(&b); err != nil || b != 0 {
			t.Fatalf("the failed batch left %d rows of 'b' (%v)", b, err)
		}
		// An empty batch runs nothing; with a final statement it is that.
		if err := db.InTx(ctx, func(tx *store.Tx) error {
			var b store.Batch
			if err := b.Run(ctx, tx); err != nil {
				return err
			}
			return b.QueryRow(ctx, tx, `SELECT v FROM kv WHERE k = ?`, []any{"counter"}, &got)
		}); err != nil || got != 42 {
			t.Fatalf("empty batch: %d, %v; want 42", got, err)
		}
	})
}
