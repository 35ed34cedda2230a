package store

import (
	"context"
	"database/sql"
	"fmt"
)

// Prepare prepares a portable-SQL statement once, for a hot path that
// runs it many times (SQLite parses a statement anew at every call
// otherwise: for the DHCP server's short queries, parsing cost as much
// as running them). Run it in a transaction with Tx.Stmt; it lives as
// long as the DB.
func (db *DB) Prepare(ctx context.Context, q string) (*sql.Stmt, error) {
	s, err := db.sql.PrepareContext(ctx, db.Rebind(q))
	if err != nil {
		return nil, fmt.Errorf("prepare %.40q: %w", q, err)
	}
	return s, nil
}

// Stmt returns a statement made by Prepare bound to the transaction (it
// reuses what the transaction's connection already prepared).
func (tx *Tx) Stmt(ctx context.Context, s *sql.Stmt) *sql.Stmt {
	return tx.tx.StmtContext(ctx, s)
}
