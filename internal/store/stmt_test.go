package store

import (
	"context"
	"path/filepath"
	"testing"
)

// SQLite's statements are prepared once and reused, in and out of
// transactions, and answer as unprepared ones do, through a schema change
// too; what is not one data statement is never kept.
func TestStatementCache(t *testing.T) {
	ctx := context.Background()
	db, err := Open(ctx, filepath.Join(t.TempDir(), "db.sqlite"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(ctx, `CREATE TABLE kv (k TEXT PRIMARY KEY, v BIGINT NOT NULL); CREATE INDEX kv_v ON kv (v)`); err != nil {
		t.Fatal(err)
	}
	const ins = `INSERT INTO kv (k, v) VALUES (?, ?)`
	const sel = `SELECT v FROM kv WHERE k = ?`
	for i, k := range []string{"a", "b", "c"} {
		if _, err := db.Exec(ctx, ins, k, i); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.Exec(ctx, ins, "a", 9); !IsUniqueViolation(err) {
		t.Fatalf("duplicate through a cached statement: %v, want a unique violation", err)
	}
	for range 3 {
		var v int
		if err := db.QueryRow(ctx, sel, "b").Scan(&v); err != nil || v != 1 {
			t.Fatalf("cached select: %d %v", v, err)
		}
	}
	// In transactions (a rolled-back one leaves nothing), on the
	// transaction's connection.
	for i := range 3 {
		err := db.InTx(ctx, func(tx *Tx) error {
			if _, err := tx.Exec(ctx, `UPDATE kv SET v = v + 1 WHERE k = ?`, "c"); err != nil {
				return err
			}
			var v int
			if err := tx.QueryRow(ctx, sel, "c").Scan(&v); err != nil {
				return err
			}
			if v != 3+i {
				t.Errorf("transaction %d reads %d, want its own update %d", i, v, 3+i)
			}
			rows, err := tx.Query(ctx, `SELECT k FROM kv WHERE v >= ? ORDER BY k`, 0)
			if err != nil {
				return err
			}
			ks, err := Column[string](rows, nil)
			if err != nil || len(ks) != 3 {
				t.Errorf("query in transaction: %v %v", ks, err)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	var v int
	if err := db.QueryRow(ctx, sel, "c").Scan(&v); err != nil || v != 5 {
		t.Fatalf("after three updates: %d %v", v, err)
	}
	// A schema change: the cached statements still answer.
	if _, err := db.Exec(ctx, `ALTER TABLE kv ADD COLUMN note TEXT NOT NULL DEFAULT 'x'`); err != nil {
		t.Fatal(err)
	}
	var note string
	if err := db.QueryRow(ctx, `SELECT note FROM kv WHERE k = ?`, "a").Scan(&note); err != nil || note != "x" {
		t.Fatalf("after ALTER: %q %v", note, err)
	}
	if err := db.QueryRow(ctx, sel, "a").Scan(&v); err != nil || v != 0 {
		t.Fatalf("cached select after ALTER: %d %v", v, err)
	}

	db.stmts.mu.Lock()
	_, hasSel := db.stmts.m[sel]
	_, hasDDL := db.stmts.m[`ALTER TABLE kv ADD COLUMN note TEXT NOT NULL DEFAULT 'x'`]
	n := len(db.stmts.m)
	db.stmts.mu.Unlock()
	if !hasSel || hasDDL || n == 0 {
		t.Fatalf("cache holds %d statements (select %v, ALTER %v)", n, hasSel, hasDDL)
	}
	for q, want := range map[string]bool{sel: true, ins: true, "  with x AS (SELECT 1) SELECT * FROM x": true,
		"DELETE FROM kv;": true, "CREATE TABLE t (a INT)": false, "SELECT 1; SELECT 2": false, "PRAGMA x": false} {
		if cacheable(q) != want {
			t.Errorf("cacheable(%q) = %v", q, !want)
		}
	}
}
