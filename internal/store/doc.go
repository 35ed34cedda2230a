// Package store is ironbark's persistence layer: one DB type over two SQL
// engines, embedded SQLite (modernc.org/sqlite, WAL; the default) and
// PostgreSQL (pgx; for several controllers). Domains own their schema as
// lists of Migration and write portable SQL with '?' placeholders; the DB
// rebinds them for PostgreSQL. Tests run the same suite against both engines
// through package storetest. On SQLite, WAL checkpoints run in the
// background, not inside commits (checkpoint.go). A hot writer (the DHCP
// lease store) may hold one connection of its own (Pin, Conn), its
// statements prepared on it.
package store
