package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"sync"
	"time"

	"ironbark/internal/retry"
)

// Conn is one connection of a DB held for a hot writer, such as the DHCP
// lease store's group commits: its statements are prepared on it once,
// its transactions begin and commit through prepared statements, and no
// goroutine is started per transaction or statement. (database/sql starts
// one per transaction, and the SQLite driver one per statement, to watch
// a cancellable context, and the driver parses BEGIN and COMMIT anew each
// time: for a transaction of a few small writes that was much of its
// cost.) Its transactions take the DB's write slot, as InTx's do.
//
// Statements run without the caller's cancellation: the context is
// checked before a transaction begins, and SQLite's busy_timeout bounds
// a wait for a lock.
//
// On SQLite its commits leave WAL checkpoints to the DB's background
// checkpointer, as every connection's do (checkpoint.go).
//
// The connection is opened at the first transaction, and again after a
// failure that may have broken it. Close (or the DB's Close) closes it.
// Safe for concurrent use; transactions run one at a time.
type Conn struct {
	db   *DB
	opts PinOptions

	mu     sync.Mutex // held for a transaction; guards what follows
	c      *sql.Conn  // nil until the first transaction, or after a failure
	stmts  map[string]*sql.Stmt
	closed bool
}

// ErrConnClosed is returned by a Conn's transaction after Close.
var ErrConnClosed = errors.New("pinned connection closed")

// PinOptions configures a Conn. The zero value is the DB's defaults.
type PinOptions struct {
	// SyncCommits makes every COMMIT on SQLite wait for an fsync of the
	// WAL (synchronous=FULL on the connection): what it committed
	// survives a power loss too, not only the process. PostgreSQL's
	// commits are durable as its server is configured.
	SyncCommits bool
}

// Pin returns a Conn of db (it connects at its first transaction).
func (db *DB) Pin(o PinOptions) *Conn {
	c := &Conn{db: db, opts: o}
	db.mu.Lock()
	db.pinned = append(db.pinned, c)
	db.mu.Unlock()
	return c
}

// Close closes the connection.
func (c *Conn) Close() error {
	c.mu.Lock()
	c.closed = true
	c.drop()
	c.mu.Unlock()
	c.db.mu.Lock()
	for i, p := range c.db.pinned {
		if p == c {
			c.db.pinned = append(c.db.pinned[:i], c.db.pinned[i+1:]...)
			break
		}
	}
	c.db.mu.Unlock()
	return nil
}

// closePinned closes the DB's Conns (DB.Close).
func (db *DB) closePinned() {
	db.mu.Lock()
	ps := append([]*Conn(nil), db.pinned...)
	db.mu.Unlock()
	for _, c := range ps {
		c.Close()
	}
}

// drop closes the connection and its statements (the next transaction
// opens a new one). Called with c.mu held.
func (c *Conn) drop() {
	for _, s := range c.stmts {
		s.Close()
	}
	c.stmts = nil
	if c.c != nil {
		// Discarded, not returned to the pool, where it would carry its
		// settings (synchronous=FULL) or a transaction left open to
		// another caller; closing it rolls that back.
		_ = c.c.Raw(func(any) error { return driver.ErrBadConn })
		c.c.Close()
		c.c = nil
	}
}

// open connects, called with c.mu held.
func (c *Conn) open(ctx context.Context) error {
	conn, err := c.db.sql.Conn(ctx)
	if err != nil {
		return fmt.Errorf("pin connection: %w", err)
	}
	if c.db.engine == SQLite && c.opts.SyncCommits {
		if _, err := conn.ExecContext(ctx, `PRAGMA synchronous=FULL`); err != nil {
			_ = conn.Raw(func(any) error { return driver.ErrBadConn })
			conn.Close()
			return fmt.Errorf("pin connection: %w", err)
		}
	}
	c.c, c.stmts = conn, map[string]*sql.Stmt{}
	return nil
}

// stmt is the connection's prepared statement for q (rebound), or nil
// when q should run unprepared (the cache is full, or it does not
// prepare: running it reports the error). Called with c.mu held.
func (c *Conn) stmt(ctx context.Context, q string) *sql.Stmt {
	if s, ok := c.stmts[q]; ok {
		return s
	}
	if len(c.stmts) >= maxStmts {
		return nil
	}
	s, err := c.c.PrepareContext(ctx, q)
	if err != nil {
		return nil
	}
	c.stmts[q] = s
	return s
}

func (c *Conn) exec(ctx context.Context, q string, args ...any) (sql.Result, error) {
	if s := c.stmt(ctx, q); s != nil {
		return s.ExecContext(ctx, args...)
	}
	return c.c.ExecContext(ctx, q, args...)
}

// InTx runs fn in a transaction on the connection, committing if it
// returns nil and rolling back otherwise; like DB.InTx it retries
// PostgreSQL serialization failures and SQLite's busy errors. fn's
// Querier is valid only during the call.
func (c *Conn) InTx(ctx context.Context, fn func(Querier) error) error {
	p := retry.Policy{Attempts: 5, Wait: 10 * time.Millisecond, MaxWait: 80 * time.Millisecond, Retryable: retryable}
	return retry.Do(ctx, p, func(int) error { return c.inTxOnce(ctx, fn) })
}

func (c *Conn) inTxOnce(ctx context.Context, fn func(Querier) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	release, err := c.db.write(ctx)
	if err != nil {
		return err
	}
	defer release()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrConnClosed
	}
	bg := context.WithoutCancel(ctx) // see Conn: no watcher goroutines
	if c.c == nil {
		if err := c.open(bg); err != nil {
			return err
		}
	}
	begin := "BEGIN"
	if c.db.engine == SQLite {
		begin = "BEGIN IMMEDIATE" // take the write lock now, as InTx's do
	}
	if _, err := c.exec(bg, begin); err != nil {
		c.drop()
		return fmt.Errorf("begin: %w", err)
	}
	if err := fn(&connTx{c: c, ctx: bg}); err != nil {
		if _, rerr := c.exec(bg, "ROLLBACK"); rerr != nil {
			c.drop()
		}
		return err
	}
	if _, err := c.exec(bg, "COMMIT"); err != nil {
		c.drop() // a failed COMMIT may leave the transaction open
		return fmt.Errorf("commit: %w", err)
	}
	c.db.ckpt.committed()
	return nil
}

// connTx is a Conn's transaction as a Querier. Its statements run with
// the transaction's context (uncancellable), not the one passed in.
type connTx struct {
	c   *Conn
	ctx context.Context
}

func (t *connTx) Engine() Engine { return t.c.db.engine }

func (t *connTx) Exec(_ context.Context, q string, args ...any) (sql.Result, error) {
	return t.c.exec(t.ctx, rebind(t.c.db.engine, q), args...)
}

func (t *connTx) Query(_ context.Context, q string, args ...any) (*sql.Rows, error) {
	q = rebind(t.c.db.engine, q)
	if s := t.c.stmt(t.ctx, q); s != nil {
		return s.QueryContext(t.ctx, args...)
	}
	return t.c.c.QueryContext(t.ctx, q, args...)
}

func (t *connTx) QueryRow(_ context.Context, q string, args ...any) *sql.Row {
	q = rebind(t.c.db.engine, q)
	if s := t.c.stmt(t.ctx, q); s != nil {
		return s.QueryRowContext(t.ctx, args...)
	}
	return t.c.c.QueryRowContext(t.ctx, q, args...)
}
