package store_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"ironbark/internal/store"
	"ironbark/internal/store/storetest"
)

func TestSealUnseal(t *testing.T) {
	storetest.Each(t, testSchema, func(t *testing.T, db *store.DB) {
		sealed, err := db.Seal("wJalrXUtnFEMI/K7MDENG", "AKIAEXAMPLE")
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(sealed, "wJalrXUtnFEMI") || !store.IsSealed(sealed) {
			t.Fatalf("sealed value %q", sealed)
		}
		if got, err := db.Unseal(sealed, "AKIAEXAMPLE"); err != nil || got != "wJalrXUtnFEMI/K7MDENG" {
			t.Fatalf("unseal: %q %v", got, err)
		}
		if _, err := db.Unseal(sealed, "AKIAOTHER"); err == nil {
			t.Fatal("a sealed secret unsealed for another row")
		}
		if got, err := db.Unseal("plain-legacy", "AKIAEXAMPLE"); err != nil || got != "plain-legacy" {
			t.Fatalf("legacy plaintext: %q %v", got, err)
		}
		info, err := os.Stat(db.KeyFile())
		if err != nil || info.Mode().Perm() != 0o600 {
			t.Fatalf("key file %s: %v %v", db.KeyFile(), info, err)
		}
	})
}

// The key file is outside the database: SQLite's beside the file, made
// on first use; another key cannot unseal, and a key file others may read
// is refused.
func TestKeyFile(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db, err := store.Open(ctx, filepath.Join(dir, "ironbark.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if db.KeyFile() != filepath.Join(dir, store.KeyFileName) {
		t.Fatalf("key file %q", db.KeyFile())
	}
	sealed, err := db.Seal("s3cret", "k")
	if err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(t.TempDir(), "other.key")
	db.UseKeyFile(other)
	if _, err := db.Unseal(sealed, "k"); err == nil || !strings.Contains(err.Error(), "not the one that sealed") {
		t.Fatalf("unseal with another key: %v", err)
	}
	os.Chmod(other, 0o644)
	db.UseKeyFile(other)
	if _, err := db.Seal("x", "k"); err == nil || !strings.Contains(err.Error(), "readable by other users") {
		t.Fatalf("world-readable key file: %v", err)
	}
	// The database files are the owner's only, the WAL's too.
	if _, err := db.Exec(ctx, `CREATE TABLE t (x INTEGER)`); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"ironbark.db", "ironbark.db-wal", "ironbark.db-shm"} {
		info, err := os.Stat(filepath.Join(dir, f))
		if err != nil || info.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v", f, info.Mode(), err)
		}
	}
}
