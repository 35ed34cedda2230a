package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"sync"
)

// Leader elects one process among those sharing a database to run
// periodic background work (purges, dead-node checks), so the work runs
// once across several controllers rather than once per controller. On
// PostgreSQL the leader is the process whose connection holds a
// session-level advisory lock: when it dies its connection closes,
// PostgreSQL frees the lock, and the next process to ask takes it over.
// On SQLite, which serves one controller, every caller leads.
type Leader struct {
	db  *DB
	key int64

	mu   sync.Mutex
	conn *sql.Conn // holds the lock while not nil
}

// Leader returns the election for the background jobs.
func (db *DB) Leader() *Leader { return &Leader{db: db, key: lockJobs} }

// Held reports whether this process leads, taking the lead if nobody
// holds it. It checks that the connection holding the lock still works
// (a broken one has lost it), so a leader that lost its connection stops
// leading at its next call. Call it before each round of work.
func (l *Leader) Held(ctx context.Context) (bool, error) {
	if l.db.engine != Postgres {
		return true, nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conn != nil {
		if err := l.conn.PingContext(ctx); err == nil {
			return true, nil
		}
		l.drop()
	}
	conn, err := l.db.sql.Conn(ctx)
	if err != nil {
		return false, fmt.Errorf("leader: %w", err)
	}
	var got bool
	if err := conn.QueryRowContext(ctx, `SELECT pg_try_advisory_lock($1)`, l.key).Scan(&got); err != nil {
		conn.Close()
		return false, fmt.Errorf("leader: %w", err)
	}
	if !got {
		conn.Close()
		return false, nil
	}
	l.conn = conn
	return true, nil
}

// Release gives up the lead (if held) so another process takes it at once.
func (l *Leader) Release(ctx context.Context) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conn == nil {
		return
	}
	if _, err := l.conn.ExecContext(ctx, `SELECT pg_advisory_unlock($1)`, l.key); err != nil {
		l.drop()
		return
	}
	l.conn.Close()
	l.conn = nil
}

// drop closes the lock's connection for good rather than back into the
// pool, where a lock it may still hold would stay taken by nobody.
func (l *Leader) drop() {
	_ = l.conn.Raw(func(any) error { return driver.ErrBadConn })
	l.conn.Close()
	l.conn = nil
}
