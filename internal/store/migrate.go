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
// transaction, and records them. Every error fails the migration loudly: a
// unique index that existing rows violate is an error to fix, not a step
// to skip. Several processes may migrate at once: PostgreSQL serialises
// them on an advisory lock and SQLite on its write lock, so the second
// finds the first's record and applies nothing. A handle remembers what it
// has applied, so calling Migrate again with the same list (every command
// migrates its domains at start) costs no query.
func (db *DB) Migrate(ctx context.Context, ms []Migration) error {
	db.mu.Lock()
	pending := make([]Migration, 0, len(ms))
	for _, m := range ms {
		if !db.applied[m.ID] {
			pending = append(pending, m)
		}
	}
	db.mu.Unlock()
	if len(pending) == 0 {
		return nil
	}
	err := db.InTx(ctx, func(tx *Tx) error {
		if err := tx.advisoryLock(ctx, lockMigrate); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			id TEXT PRIMARY KEY, applied_at BIGINT NOT NULL)`)
		return err
	})
	if err != nil {
		return fmt.Errorf("migrate: create schema_migrations: %w", err)
	}
	for _, m := range pending {
		q := m.SQL
		if db.engine == Postgres && m.Postgres != "" {
			q = m.Postgres
		}
		err := db.InTx(ctx, func(tx *Tx) error {
			if err := tx.advisoryLock(ctx, lockMigrate); err != nil {
				return err
			}
			var n int
			if err := tx.QueryRow(ctx, `SELECT COUNT(*) FROM schema_migrations WHERE id = ?`, m.ID).Scan(&n); err != nil {
				return err
			}
			if n > 0 {
				return nil
			}
			if _, err := tx.Exec(ctx, q); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `INSERT INTO schema_migrations (id, applied_at) VALUES (?, ?)`, m.ID, time.Now().Unix())
			return err
		})
		if err != nil {
			return fmt.Errorf("migrate %s: %w", m.ID, err)
		}
		db.mu.Lock()
		if db.applied == nil {
			db.applied = map[string]bool{}
		}
		db.applied[m.ID] = true
		db.mu.Unlock()
	}
	return nil
}
