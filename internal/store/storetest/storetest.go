// Package storetest runs a test against every store engine: SQLite in a
// temp dir, and PostgreSQL when IRONBARK_TEST_PG names a server (make test
// starts a private one; see scripts/pg-test-server). Each test gets a fresh
// database. Under CI=true a missing PostgreSQL is a failure, not a skip.
package storetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"testing"

	"ironbark/internal/store"
)

// EnvPG names the environment variable holding the admin URL of the test
// PostgreSQL server.
const EnvPG = "IRONBARK_TEST_PG"

// Each runs fn as a subtest once per engine ("sqlite", "postgres") with a
// fresh, migrated database.
func Each(t *testing.T, ms []store.Migration, fn func(t *testing.T, db *store.DB)) {
	t.Helper()
	t.Run("sqlite", func(t *testing.T) { fn(t, SQLite(t, ms)) })
	t.Run("postgres", func(t *testing.T) { fn(t, Postgres(t, ms)) })
}

// SQLite returns a fresh migrated SQLite database in a temp dir.
func SQLite(t testing.TB, ms []store.Migration) *store.DB {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, filepath.Join(t.TempDir(), "ironbark.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.Migrate(ctx, ms); err != nil {
		t.Fatal(err)
	}
	return db
}

// Postgres returns a fresh migrated database on the test server, dropped
// when the test ends. It skips when no server is configured, unless CI=true.
func Postgres(t testing.TB, ms []store.Migration) *store.DB {
	t.Helper()
	admin := os.Getenv(EnvPG)
	if admin == "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not set: make test starts PostgreSQL; CI must run the postgres engine", EnvPG)
		}
		t.Skipf("%s not set (make test sets it): skipping the postgres engine", EnvPG)
	}
	ctx := context.Background()
	adb, err := store.Open(ctx, admin)
	if err != nil {
		t.Fatalf("connect test postgres: %v", err)
	}
	defer adb.Close()
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "t_" + hex.EncodeToString(b[:])
	if _, err := adb.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create test database: %v", err)
	}
	u, err := url.Parse(admin)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name
	db, err := store.Open(ctx, u.String())
	if err != nil {
		t.Fatal(err)
	}
	db.UseKeyFile(filepath.Join(t.TempDir(), store.KeyFileName))
	t.Cleanup(func() {
		db.Close()
		a, err := store.Open(context.Background(), admin)
		if err == nil {
			_, _ = a.Exec(context.Background(), fmt.Sprintf("DROP DATABASE IF EXISTS %s WITH (FORCE)", name))
			a.Close()
		}
	})
	if err := db.Migrate(ctx, ms); err != nil {
		t.Fatal(err)
	}
	return db
}
