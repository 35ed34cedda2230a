package store

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Secrets at rest (access keys' secrets: SigV4 needs them back, so they
// are encrypted, not hashed) are sealed with AES-256-GCM under a key kept
// in a file outside the database: a copy of the database alone (a backup,
// a dump, a replica, the PostgreSQL server itself) holds no usable secret.
// The key file is KeyFileName beside a SQLite store (the frontend's data
// dir) unless UseKeyFile names another; a PostgreSQL store needs
// UseKeyFile, and every controller on one PostgreSQL needs the same file.

// KeyFileName is the key file's name in the frontend data dir.
const KeyFileName = "secret.key"

// sealedPrefix marks a sealed value; its version is in the name.
const sealedPrefix = "sealed1:"

// ErrNoKeyFile is returned by Seal and Unseal on a DB that has no key
// file (a PostgreSQL store opened without UseKeyFile).
var ErrNoKeyFile = errors.New("no secret key file for this store")

// UseKeyFile makes db seal and unseal secrets with the key in path,
// created (0600, 32 random bytes, hex) on first use.
func (db *DB) UseKeyFile(path string) {
	db.mu.Lock()
	defer db.mu.Unlock()
	db.keyPath, db.aead = path, nil
}

// KeyFile is the key file db seals with, or "".
func (db *DB) KeyFile() string {
	db.mu.Lock()
	defer db.mu.Unlock()
	return db.keyPath
}

func defaultKeyFile(sqlitePath string) string {
	return filepath.Join(filepath.Dir(sqlitePath), KeyFileName)
}

func (db *DB) cipher() (cipher.AEAD, error) {
	db.mu.Lock()
	defer db.mu.Unlock()
	if db.aead != nil {
		return db.aead, nil
	}
	if db.keyPath == "" {
		return nil, ErrNoKeyFile
	}
	key, err := loadOrCreateKey(db.keyPath)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", db.keyPath, err)
	}
	if db.aead, err = cipher.NewGCM(block); err != nil {
		return nil, err
	}
	return db.aead, nil
}

func loadOrCreateKey(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		key := make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return nil, err
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, fmt.Errorf("key file: %w", err)
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err == nil {
			_, err = f.WriteString(hex.EncodeToString(key) + "\n")
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				os.Remove(path)
				return nil, fmt.Errorf("write key file %s: %w", path, err)
			}
			return key, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("create key file %s: %w", path, err)
		}
		// Another process made it first: use theirs.
		b, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, fmt.Errorf("read key file: %w", err)
	}
	if info, err := os.Stat(path); err == nil && info.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("key file %s is readable by other users (mode %04o): chmod 600 it", path, info.Mode().Perm())
	}
	key, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(key) != 32 {
		return nil, fmt.Errorf("key file %s: want 64 hex digits (a 256-bit key)", path)
	}
	return key, nil
}

// Seal encrypts a secret for a column. bind names what the secret belongs
// to (its row's key, say): a sealed value copied to another row does not
// unseal there.
func (db *DB) Seal(secret, bind string) (string, error) {
	aead, err := db.cipher()
	if err != nil {
		return "", fmt.Errorf("seal: %w", err)
	}
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", err
	}
	out := aead.Seal(nonce, nonce, []byte(secret), []byte(bind))
	return sealedPrefix + base64.RawStdEncoding.EncodeToString(out), nil
}

// IsSealed reports whether a stored value is sealed (rather than a
// plaintext left by an older version).
func IsSealed(stored string) bool { return strings.HasPrefix(stored, sealedPrefix) }

// Unseal decrypts what Seal made with the same bind. A value that is not
// sealed is returned as it is: rows from before sealing, until
// they are sealed in place.
func (db *DB) Unseal(stored, bind string) (string, error) {
	if !IsSealed(stored) {
		return stored, nil
	}
	aead, err := db.cipher()
	if err != nil {
		return "", fmt.Errorf("unseal: %w", err)
	}
	raw, err := base64.RawStdEncoding.DecodeString(strings.TrimPrefix(stored, sealedPrefix))
	if err != nil || len(raw) < aead.NonceSize() {
		return "", errors.New("unseal: malformed sealed value")
	}
	plain, err := aead.Open(nil, raw[:aead.NonceSize()], raw[aead.NonceSize():], []byte(bind))
	if err != nil {
		return "", fmt.Errorf("unseal: the key file %s is not the one that sealed this secret", db.KeyFile())
	}
	return string(plain), nil
}
