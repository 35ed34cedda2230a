package store

import (
	"context"
	"crypto/cipher"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver
	_ "modernc.org/sqlite"             // registers the "sqlite" driver

	"ironbark/internal/retry"
)

// Engine names the SQL engine behind a DB.
type Engine string

const (
	SQLite   Engine = "sqlite"
	Postgres Engine = "postgres"
)

// DB is a database handle that speaks portable SQL: queries use '?'
// placeholders, rebound to $n for PostgreSQL.
type DB struct {
	sql    *sql.DB
	nodes  *sql.DB // PostgreSQL's node lane (lane.go); nil on SQLite
	engine Engine
	url    string

	mu      sync.Mutex
	applied map[string]bool // migrations known applied through this handle
	keyPath string          // the key file secrets are sealed with (secrets.go)
	aead    cipher.AEAD     // its cipher, once loaded

	// writer is SQLite's one write slot in this process (see write).
	writer chan struct{}
	ckpt   *checkpointer // SQLite's WAL checkpoints, out of commits (checkpoint.go)
	stmts  stmtCache     // SQLite's prepared statements (stmt.go)

	pinned []*Conn // open Conns (pinned.go), closed with the DB; guarded by mu
}

// Open opens the database named by url: "postgres://..." or
// "postgresql://..." for PostgreSQL, anything else ("sqlite:PATH" or a
// plain file path) for SQLite. The SQLite file's directory is created.
func Open(ctx context.Context, url string) (*DB, error) {
	var db *DB
	switch {
	case strings.HasPrefix(url, "postgres://"), strings.HasPrefix(url, "postgresql://"):
		h, err := sql.Open("pgx", url)
		if err != nil {
			return nil, fmt.Errorf("open postgres: %w", err)
		}
		h.SetMaxOpenConns(16)
		h.SetMaxIdleConns(16)
		nodes, err := sql.Open("pgx", url)
		if err != nil {
			h.Close()
			return nil, fmt.Errorf("open postgres: %w", err)
		}
		nodes.SetMaxOpenConns(nodeLaneConns)
		nodes.SetMaxIdleConns(nodeLaneConns)
		db = &DB{sql: h, nodes: nodes, engine: Postgres, url: url}
	default:
		path := strings.TrimPrefix(url, "sqlite:")
		if path == "" {
			return nil, errors.New("open sqlite: empty path")
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, fmt.Errorf("open sqlite: %w", err)
		}
		// Made 0600 before SQLite opens it: its -wal and -shm files take
		// the database file's mode.
		if f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600); err == nil {
			f.Close()
		} else {
			return nil, fmt.Errorf("open sqlite: %w", err)
		}
		// IMMEDIATE transactions take the write lock up front so two
		// writers queue on busy_timeout instead of failing to upgrade.
		// Checkpoints run in the background (checkpoint.go); the WAL,
		// which grows between the checkpoints that complete, is cut back
		// to walKeepBytes when it starts over.
		dsn := "file:" + path + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)" +
			"&_pragma=synchronous(NORMAL)&_pragma=foreign_keys(1)&_pragma=wal_autocheckpoint(0)" +
			fmt.Sprintf("&_pragma=journal_size_limit(%d)", walKeepBytes) + "&_txlock=immediate"
		h, err := sql.Open("sqlite", dsn)
		if err != nil {
			return nil, fmt.Errorf("open sqlite %s: %w", path, err)
		}
		h.SetMaxOpenConns(8)
		h.SetMaxIdleConns(8)
		h.SetConnMaxIdleTime(time.Minute)
		db = &DB{sql: h, engine: SQLite, url: path, keyPath: defaultKeyFile(path), writer: make(chan struct{}, 1)}
		db.ckpt = &checkpointer{db: db}
	}
	pctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := db.sql.PingContext(pctx); err != nil {
		db.closePools()
		return nil, fmt.Errorf("connect %s: %w", db.engine, err)
	}
	return db, nil
}

// URL is what Open was given (the file path for SQLite), so another
// handle on the same database can be opened.
func (db *DB) URL() string { return db.url }

// Engine reports which SQL engine the DB uses.
func (db *DB) Engine() Engine { return db.engine }

// Close closes the database.
func (db *DB) Close() error {
	db.closePinned()
	db.ckpt.close()
	db.closeStmts()
	return db.closePools()
}

func (db *DB) closePools() error {
	if db.nodes != nil {
		db.nodes.Close()
	}
	return db.sql.Close()
}

// SQL exposes the underlying handle for the rare caller that needs it
// (benchmarks, engine-specific maintenance). Prefer the methods below.
func (db *DB) SQL() *sql.DB { return db.sql }

// Rebind rewrites '?' placeholders for the DB's engine. Question marks
// inside single-quoted literals are left alone.
func (db *DB) Rebind(q string) string { return rebind(db.engine, q) }

func rebind(e Engine, q string) string {
	if e != Postgres || !strings.Contains(q, "?") {
		return q
	}
	var b strings.Builder
	b.Grow(len(q) + 8)
	n, quoted := 0, false
	for i := 0; i < len(q); i++ {
		c := q[i]
		switch {
		case c == '\'':
			quoted = !quoted
			b.WriteByte(c)
		case c == '?' && !quoted:
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// Exec runs a statement outside a transaction.
func (db *DB) Exec(ctx context.Context, q string, args ...any) (sql.Result, error) {
	release, err := db.write(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	defer db.ckpt.committed()
	q = db.Rebind(q)
	// It holds the write slot: no waiting for a connection to prepare on.
	if s := db.cached(ctx, q, true); s != nil {
		return s.ExecContext(ctx, args...)
	}
	return db.pool(ctx).ExecContext(ctx, q, args...)
}

// writeWait is how long a writer waits for SQLite's write slot, as long as
// SQLite's own busy_timeout.
const writeWait = 10 * time.Second

// ErrBusy is returned when SQLite's one writer held the database longer
// than a writer may wait.
var ErrBusy = errors.New("database busy: another write held it too long")

// write takes SQLite's write slot for this process. SQLite lets one
// transaction write at a time; without the slot every writer that waits
// holds a pooled connection while it does, and a writer holding the lock
// that needs a second connection to read (placement reads nodes and usage
// inside the launch transaction) finds none: a burst of heartbeats stalled
// RunInstances for their whole busy timeout. Writers queue here, holding
// no connection; readers never wait. PostgreSQL locks rows, not the
// database: no slot.
func (db *DB) write(ctx context.Context) (func(), error) {
	if db.writer == nil {
		return func() {}, nil
	}
	select {
	case db.writer <- struct{}{}: // free: no timer to make
		return func() { <-db.writer }, nil
	default:
	}
	t := time.NewTimer(writeWait)
	defer t.Stop()
	select {
	case db.writer <- struct{}{}:
		return func() { <-db.writer }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-t.C:
		return nil, ErrBusy
	}
}

// Query runs a query outside a transaction.
func (db *DB) Query(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	q = db.Rebind(q)
	if s := db.cached(ctx, q, false); s != nil {
		return s.QueryContext(ctx, args...)
	}
	return db.pool(ctx).QueryContext(ctx, q, args...)
}

// QueryRow runs a single-row query outside a transaction.
func (db *DB) QueryRow(ctx context.Context, q string, args ...any) *sql.Row {
	q = db.Rebind(q)
	if s := db.cached(ctx, q, false); s != nil {
		return s.QueryRowContext(ctx, args...)
	}
	return db.pool(ctx).QueryRowContext(ctx, q, args...)
}

// Tx is a transaction with the same portable-SQL methods as DB.
type Tx struct {
	tx     *sql.Tx
	engine Engine
	db     *DB      // its statement cache
	after  []func() // AfterCommit's
	notes  []string // Publish's channels and payloads, in pairs, sent at commit
}

// AfterCommit has fn run once the transaction has committed (not if it
// rolls back, nor in an attempt InTx retries), before InTx returns.
func (tx *Tx) AfterCommit(fn func()) { tx.after = append(tx.after, fn) }

// Engine reports which SQL engine the transaction runs on.
func (tx *Tx) Engine() Engine { return tx.engine }

// LockPlacement serialises the transactions that take it across every
// process on the database, until the transaction ends: PostgreSQL takes a
// transaction-scoped advisory lock; SQLite's transactions begin IMMEDIATE
// and so already hold the database's one write lock. Reads made after it
// returns, on any connection, see what earlier holders committed.
func (tx *Tx) LockPlacement(ctx context.Context) error {
	return tx.advisoryLock(ctx, lockPlacement)
}

// Advisory lock keys (PostgreSQL's pg_advisory_xact_lock takes a bigint);
// one per thing serialised, distinct across the project.
const (
	lockMigrate   int64 = 0x69726f6e_0001 // "iron" 1
	lockPlacement int64 = 0x69726f6e_0002
	lockJobs      int64 = 0x69726f6e_0003 // session-level: the background jobs' leader (leader.go)
	// LockMemberChanges is taken by the controller's trigger that logs
	// security group membership changes (controller/memberlog.go), so
	// the log's rows commit in the order of their seq.
	LockMemberChanges int64 = 0x69726f6e_0004
)

func (tx *Tx) advisoryLock(ctx context.Context, key int64) error {
	if tx.engine != Postgres {
		return nil
	}
	if _, err := tx.tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, key); err != nil {
		return fmt.Errorf("advisory lock %x: %w", key, err)
	}
	return nil
}

func (tx *Tx) Exec(ctx context.Context, q string, args ...any) (sql.Result, error) {
	q = rebind(tx.engine, q)
	if s := tx.cached(ctx, q); s != nil {
		return s.ExecContext(ctx, args...)
	}
	return tx.tx.ExecContext(ctx, q, args...)
}

func (tx *Tx) Query(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	q = rebind(tx.engine, q)
	if s := tx.cached(ctx, q); s != nil {
		return s.QueryContext(ctx, args...)
	}
	return tx.tx.QueryContext(ctx, q, args...)
}

func (tx *Tx) QueryRow(ctx context.Context, q string, args ...any) *sql.Row {
	q = rebind(tx.engine, q)
	if s := tx.cached(ctx, q); s != nil {
		return s.QueryRowContext(ctx, args...)
	}
	return tx.tx.QueryRowContext(ctx, q, args...)
}

// cached is the handle's prepared statement for q on the transaction's
// connection (prepared there once), or nil.
func (tx *Tx) cached(ctx context.Context, q string) *sql.Stmt {
	if tx.db == nil {
		return nil
	}
	s := tx.db.cached(ctx, q, true)
	if s == nil {
		return nil
	}
	return tx.tx.StmtContext(ctx, s)
}

// Querier is what DB and Tx have in common, for code that runs either
// inside or outside a transaction.
type Querier interface {
	Engine() Engine
	Exec(ctx context.Context, q string, args ...any) (sql.Result, error)
	Query(ctx context.Context, q string, args ...any) (*sql.Rows, error)
	QueryRow(ctx context.Context, q string, args ...any) *sql.Row
}

// InTx runs fn in a transaction, committing if it returns nil and rolling
// back otherwise. PostgreSQL serialization failures are retried.
func (db *DB) InTx(ctx context.Context, fn func(*Tx) error) error {
	p := retry.Policy{Attempts: 5, Wait: 10 * time.Millisecond, MaxWait: 80 * time.Millisecond, Retryable: retryable}
	return retry.Do(ctx, p, func(int) error { return db.inTxOnce(ctx, fn) })
}

func (db *DB) inTxOnce(ctx context.Context, fn func(*Tx) error) error {
	release, err := db.write(ctx)
	if err != nil {
		return err
	}
	defer release()
	t, err := db.pool(ctx).BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	tx := &Tx{tx: t, engine: db.engine, db: db}
	if err := fn(tx); err != nil {
		_ = t.Rollback()
		return err
	}
	if err := tx.sendNotes(ctx); err != nil {
		_ = t.Rollback()
		return err
	}
	if err := t.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	db.ckpt.committed()
	for _, f := range tx.after {
		f()
	}
	return nil
}

// ErrNotFound is returned by helpers when a row does not exist.
var ErrNotFound = errors.New("not found")

// Column reads the one column of every row of rows (and closes them): the
// ids a SELECT id ... returns, say.
func Column[T any](rows *sql.Rows, err error) ([]T, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		var v T
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}
