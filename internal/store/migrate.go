package store

import (
	"context"
	"fmt"
	"time"
)

// Migration is one versioned schema change. IDs are global and stable
// ("controller/0001-accounts"); each domain keeps its own ordered list and
// passes it to Migrate at start. Postgres, when set, replaces SQL on
// PostgreSQL where the dialects differ.
type Migration struct {
	ID       string
	SQL      string
	Postgres string
}

// Migrate applies the migrations not yet applied, in order, each in its own
// transaction, and records them. Safe to call from several processes: the
// record insert is the lock.
func (db *DB) Migrate(ctx context.Context, ms []Migration) error {
	if _, err := db.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		id TEXT PRIMARY KEY, applied_at BIGINT NOT NULL)`); err != nil {
		return fmt.Errorf("migrate: create schema_migrations: %w", err)
	}
	for _, m := range ms {
		q := m.SQL
		if db.engine == Postgres && m.Postgres != "" {
			q = m.Postgres
		}
		err := db.InTx(ctx, func(tx *Tx) error {
			var n int
			if err := tx.QueryRow(ctx, `SELECT COUNT(*) FROM schema_migrations WHERE id = ?`, m.ID).Scan(&n); err != nil {
				return err
			}
			if n > 0 {
				return nil
			}
			if _, err := tx.Exec(ctx, `INSERT INTO schema_migrations (id, applied_at) VALUES (?, ?)`, m.ID, time.Now().Unix()); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, q)
			return err
		})
		if err != nil && !IsUniqueViolation(err) {
			return fmt.Errorf("migrate %s: %w", m.ID, err)
		}
	}
	return nil
}
