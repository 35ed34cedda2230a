package store

import (
	"errors"

	"github.com/jackc/pgx/v5/pgconn"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// Driver errors are classified by the codes the engines give them, never
// by their text: SQLite's (extended) result codes and PostgreSQL's
// SQLSTATE. A message that merely reads like one is not one.

// PostgreSQL SQLSTATEs this package acts on.
const (
	pgUniqueViolation      = "23505"
	pgSerializationFailure = "40001"
	pgDeadlockDetected     = "40P01"
)

// sqliteCode is the extended result code of a SQLite driver error in
// err's chain, or 0.
func sqliteCode(err error) int {
	var e *sqlite.Error
	if errors.As(err, &e) {
		return e.Code()
	}
	return 0
}

// pgCode is the SQLSTATE of a PostgreSQL error in err's chain, or "".
func pgCode(err error) string {
	var e *pgconn.PgError
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

// IsUniqueViolation reports whether err is a unique-constraint violation on
// either engine (a UNIQUE index or a primary key), so callers can map it to
// "already exists".
func IsUniqueViolation(err error) bool {
	if err == nil {
		return false
	}
	switch sqliteCode(err) {
	case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
		return true
	}
	return pgCode(err) == pgUniqueViolation
}

// retryable reports whether a transaction failed only because another one
// got in its way: a PostgreSQL serialization failure or deadlock, or
// SQLite busy or locked (primary codes; the extended ones share the low
// byte).
func retryable(err error) bool {
	if err == nil {
		return false
	}
	switch sqliteCode(err) & 0xff {
	case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED:
		return true
	}
	switch pgCode(err) {
	case pgSerializationFailure, pgDeadlockDetected:
		return true
	}
	return false
}
