package roll

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"ironbark/internal/atomicfile"
)

// KeyID names a public key: the first 8 bytes of its SHA-256, in hex.
func KeyID(pub ed25519.PublicKey) string {
	h := sha256.Sum256(pub)
	return hex.EncodeToString(h[:8])
}

// GenerateKey writes a new ed25519 signing key to priv (PKCS#8 PEM, mode
// 0600) and its public key to priv+".pub" (PKIX PEM). It refuses to
// overwrite an existing key.
func GenerateKey(priv string) (ed25519.PublicKey, error) {
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	pder, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(priv, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("roll key: %w", err)
	}
	if err := pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: der}); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	pf, err := os.OpenFile(priv+".pub", os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, fmt.Errorf("roll key: %w", err)
	}
	if err := pem.Encode(pf, &pem.Block{Type: "PUBLIC KEY", Bytes: pder}); err != nil {
		pf.Close()
		return nil, err
	}
	return pub, pf.Close()
}

// ReadPrivateKey reads a key GenerateKey wrote.
func ReadPrivateKey(p string) (ed25519.PrivateKey, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("signing key %s: not a PEM private key", p)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", p, err)
	}
	ek, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("signing key %s: not an ed25519 key", p)
	}
	return ek, nil
}

// ParsePublicKey reads a PEM public key (as GenerateKey writes it).
func ParsePublicKey(b []byte) (ed25519.PublicKey, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PUBLIC KEY" {
		return nil, errors.New("not a PEM public key")
	}
	k, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		return nil, err
	}
	ek, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, errors.New("not an ed25519 key")
	}
	return ek, nil
}

// TrustedKeys reads the public keys in dir (*.pub): the keys a frontend
// accepts rolls from. A missing dir is no keys.
func TrustedKeys(dir string) ([]ed25519.PublicKey, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("trusted roll keys: %w", err)
	}
	var names []string
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".pub") && e.Type().IsRegular() {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	var keys []ed25519.PublicKey
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			return nil, fmt.Errorf("trusted roll keys: %w", err)
		}
		k, err := ParsePublicKey(b)
		if err != nil {
			return nil, fmt.Errorf("trusted roll key %s: %w", n, err)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// Trust copies the public key file pub into dir under its key ID.
func Trust(dir, pub string) (string, error) {
	b, err := os.ReadFile(pub)
	if err != nil {
		return "", fmt.Errorf("trust roll key: %w", err)
	}
	k, err := ParsePublicKey(b)
	if err != nil {
		return "", fmt.Errorf("trust roll key %s: %w", pub, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("trust roll key: %w", err)
	}
	id := KeyID(k)
	if err := atomicfile.Write(filepath.Join(dir, id+".pub"), b, 0o600); err != nil {
		return "", fmt.Errorf("trust roll key: %w", err)
	}
	return id, nil
}
