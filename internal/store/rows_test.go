package store_test

import (
	"context"
	"fmt"
	"testing"

	"ironbark/internal/store"
	"ironbark/internal/store/storetest"
)

// ExecRows writes more rows than one statement may bind, on both engines.
func TestExecRows(t *testing.T) {
	storetest.Each(t, testSchema, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		const n = 20000 // 40,000 parameters: two statements
		args := make([]any, 0, 2*n)
		for i := range n {
			args = append(args, fmt.Sprintf("k%05d", i), i)
		}
		if err := db.InTx(ctx, func(tx *store.Tx) error {
			return store.ExecRows(ctx, tx, `INSERT INTO kv (k, v) VALUES`, 2, args, `ON CONFLICT (k) DO UPDATE SET v = excluded.v`)
		}); err != nil {
			t.Fatal(err)
		}
		var count, sum int64
		if err := db.QueryRow(ctx, `SELECT COUNT(*), SUM(v) FROM kv`).Scan(&count, &sum); err != nil {
			t.Fatal(err)
		}
		if count != n || sum != n*(n-1)/2 {
			t.Fatalf("%d rows summing to %d, want %d and %d", count, sum, n, n*(n-1)/2)
		}
		if err := store.ExecRows(ctx, db, `INSERT INTO kv (k, v) VALUES`, 2, []any{"odd"}, ""); err == nil {
			t.Fatal("a row short of its columns was run")
		}
		if err := store.ExecRows(ctx, db, `INSERT INTO kv (k, v) VALUES`, 2, nil, ""); err != nil {
			t.Fatalf("no rows: %v", err)
		}
	})
}
