package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"sync"
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

// SQLite parses every statement anew at each call unless it was
// prepared: at 10,000 nodes, parsing the node API's handful of short
// queries (the node's record, its instances, the heartbeat's update) took
// an eighth of the controller's CPU. So a SQLite handle prepares the
// statements its callers run (Query, QueryRow and Exec, on the handle or
// in a transaction) once, and reuses them on every connection. Only
// single data statements are kept (SELECT, INSERT, UPDATE, DELETE, WITH:
// no schema changes, nothing with a ';'), and at most maxStmts of them:
// the hot ones come first, and a query built with a variable number of
// placeholders takes a slot per length until the cache is full, after
// which new texts run unprepared as before. PostgreSQL needs none of it:
// pgx keeps prepared statements per connection itself.
type stmtCache struct {
	mu     sync.Mutex
	m      map[string]*sql.Stmt // nil value: being prepared
	closed bool
	// bg counts background prepares: Close waits for them, or one could
	// open a connection (and recreate SQLite's -wal file) after it.
	bg sync.WaitGroup
}

const maxStmts = 512

// cached returns the prepared statement for q (already rebound), or nil
// when q is not cached: run it unprepared then (a statement that does not
// prepare, a table not yet migrated say, reports its error there). With
// later, a statement not yet cached is prepared in the background instead
// of now: a transaction holding SQLite's write slot must not wait for a
// second connection to prepare on.
func (db *DB) cached(ctx context.Context, q string, later bool) *sql.Stmt {
	if db.engine != SQLite || !cacheable(q) {
		return nil
	}
	c := &db.stmts
	c.mu.Lock()
	s, ok := c.m[q]
	if ok || c.closed || len(c.m) >= maxStmts {
		c.mu.Unlock()
		return s
	}
	if c.m == nil {
		c.m = map[string]*sql.Stmt{}
	}
	c.m[q] = nil // being prepared
	if later {
		c.bg.Add(1)
		c.mu.Unlock()
		go func() {
			defer c.bg.Done()
			db.prepare(context.WithoutCancel(ctx), q)
		}()
		return nil
	}
	c.mu.Unlock()
	return db.prepare(ctx, q)
}

// prepare prepares q for the cache (its slot is taken, nil).
func (db *DB) prepare(ctx context.Context, q string) *sql.Stmt {
	s, err := db.sql.PrepareContext(ctx, q)
	c := &db.stmts
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil || c.m == nil {
		// Try again at a later call; or the handle was closed.
		delete(c.m, q)
		if s != nil {
			s.Close()
		}
		return nil
	}
	c.m[q] = s
	return s
}

// cacheable reports whether q is one data statement.
func cacheable(q string) bool {
	t := strings.TrimSpace(q)
	if strings.Contains(strings.TrimSuffix(t, ";"), ";") {
		return false
	}
	if len(t) < 6 {
		return false
	}
	switch strings.ToUpper(t[:6]) {
	case "SELECT", "INSERT", "UPDATE", "DELETE":
		return true
	}
	return strings.EqualFold(t[:5], "WITH ")
}

// closeStmts stops background prepares, waits for those running, and
// closes the cached statements.
func (db *DB) closeStmts() {
	c := &db.stmts
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.bg.Wait()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range c.m {
		if s != nil { // nil: still being prepared (prepare closes it)
			s.Close()
		}
	}
	c.m = nil
}
