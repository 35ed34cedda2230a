package cluster

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/base32"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"ironbark/internal/nodeapi"
	"ironbark/internal/pki"
	"ironbark/internal/store"
)

// DefaultTokenTTL is how long an enrollment token stays valid.
const DefaultTokenTTL = 24 * time.Hour

// ErrBadToken is the one answer to an unknown, used or expired token.
var ErrBadToken = errors.New("enrollment token is unknown, used or expired")

// NewToken makes a one-time enrollment token for cluster, valid for ttl.
func (r *Registry) NewToken(ctx context.Context, ca *pki.CA, cluster string, ttl time.Duration) (string, error) {
	if _, err := r.Cluster(ctx, cluster); err != nil {
		return "", err
	}
	var b [20]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	secret := strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
	now := time.Now()
	_, err := r.db.Exec(ctx, `INSERT INTO node_tokens (hash, cluster, created_at, expires_at, used_at, node_id)
		VALUES (?, ?, ?, ?, 0, '')`, hashSecret(secret), cluster, now.Unix(), now.Add(ttl).Unix())
	if err != nil {
		return "", fmt.Errorf("store token: %w", err)
	}
	return nodeapi.TokenPrefix + "." + secret + "." + ca.Fingerprint(), nil
}

func hashSecret(secret string) string {
	s := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(s[:])
}

// enroll spends a token and records a new node, in one transaction, and
// returns the node. sign issues the certificate for the new node ID.
func (r *Registry) enroll(ctx context.Context, tok, hostname, hypervisor string, c nodeapi.Capacity, now time.Time,
	sign func(nodeID string) (serial string, err error)) (Node, error) {
	secret, _, err := nodeapi.ParseToken(tok)
	if err != nil {
		return Node{}, ErrBadToken
	}
	n := Node{Hostname: hostname, Capacity: c, Hypervisor: hypervisor, Enrolled: now, LastHeartbeat: now, State: NodeUp}
	err = r.db.InTx(ctx, func(tx *store.Tx) error {
		var cluster string
		var expires, used int64
		err := tx.QueryRow(ctx, `SELECT cluster, expires_at, used_at FROM node_tokens WHERE hash = ?`, hashSecret(secret)).
			Scan(&cluster, &expires, &used)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrBadToken
		}
		if err != nil {
			return err
		}
		if used != 0 || now.Unix() >= expires {
			return ErrBadToken
		}
		n.Cluster = cluster
		n.ID = newNodeID()
		if n.CertSerial, err = sign(n.ID); err != nil {
			return err
		}
		res, err := tx.Exec(ctx, `UPDATE node_tokens SET used_at = ?, node_id = ? WHERE hash = ? AND used_at = 0`,
			now.Unix(), n.ID, hashSecret(secret))
		if err != nil {
			return err
		}
		if k, _ := res.RowsAffected(); k != 1 {
			return ErrBadToken
		}
		_, err = tx.Exec(ctx, `INSERT INTO nodes (`+nodeCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			n.ID, n.Cluster, n.Hostname, c.Cores, c.MemoryMiB, c.DiskGiB, hypervisor, n.CertSerial,
			now.UnixMilli(), now.UnixMilli(), NodeUp)
		return err
	})
	if err != nil {
		if errors.Is(err, ErrBadToken) {
			return Node{}, err
		}
		return Node{}, fmt.Errorf("enroll %s: %w", hostname, err)
	}
	return n, nil
}

func newNodeID() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return "node-" + hex.EncodeToString(b[:])
}
