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
	"slices"
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

// ErrTokenIdentity is returned when a host-bound token is presented by a
// node whose name or MAC addresses are not the host's.
var ErrTokenIdentity = errors.New("enrollment token is bound to another host")

// ErrTokenIssued is returned when an install attempt asks for its token a
// second time: each attempt gets one, once.
var ErrTokenIssued = errors.New("the enrollment token of this install attempt was already issued")

// HostBinding names the host and install attempt an install token is for.
type HostBinding struct {
	Cluster  string
	Hostname string
	MAC      string // canonical lower-case; the enrolling node must have it
	// IP, when set, is the host's address (its DHCP lease): enrollment
	// must come from it. The MAC a node names is its own word; the
	// address it connects from is harder to fake on a switched network.
	IP      string
	Attempt string
}

// InstallToken mints the enrollment token of one install attempt of a host:
// bound to the host's name and MAC, issued once per attempt. Every earlier
// unused token of the host is revoked in the same transaction, so only the
// current attempt's token can enroll.
func (r *Registry) InstallToken(ctx context.Context, ca *pki.CA, b HostBinding, ttl time.Duration) (string, error) {
	if b.Hostname == "" || b.MAC == "" || b.Attempt == "" {
		return "", errors.New("install token: hostname, MAC and attempt are required")
	}
	if _, err := r.Cluster(ctx, b.Cluster); err != nil {
		return "", err
	}
	secret, err := newSecret()
	if err != nil {
		return "", err
	}
	now := time.Now()
	err = r.db.InTx(ctx, func(tx *store.Tx) error {
		var n int
		if err := tx.QueryRow(ctx, `SELECT COUNT(*) FROM node_tokens WHERE hostname = ? AND attempt = ?`,
			b.Hostname, b.Attempt).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return ErrTokenIssued
		}
		if _, err := tx.Exec(ctx, `DELETE FROM node_tokens WHERE hostname = ? AND used_at = 0`, b.Hostname); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO node_tokens (hash, cluster, created_at, expires_at, used_at, node_id, hostname, mac, attempt, ip)
			VALUES (?, ?, ?, ?, 0, '', ?, ?, ?, ?)`, hashSecret(secret), b.Cluster, now.Unix(), now.Add(ttl).Unix(),
			b.Hostname, strings.ToLower(b.MAC), b.Attempt, b.IP)
		if store.IsUniqueViolation(err) {
			return ErrTokenIssued
		}
		return err
	})
	if errors.Is(err, ErrTokenIssued) {
		return "", fmt.Errorf("%s attempt %s: %w", b.Hostname, b.Attempt, err)
	}
	if err != nil {
		return "", fmt.Errorf("store install token of %s: %w", b.Hostname, err)
	}
	return nodeapi.TokenPrefix + "." + secret + "." + ca.Fingerprint(), nil
}

// RevokeHostTokens revokes a host's unused tokens (its install attempt
// ended or a new one started) and returns how many there were.
func (r *Registry) RevokeHostTokens(ctx context.Context, hostname string) (int, error) {
	res, err := r.db.Exec(ctx, `DELETE FROM node_tokens WHERE hostname = ? AND used_at = 0`, hostname)
	if err != nil {
		return 0, fmt.Errorf("revoke tokens of %s: %w", hostname, err)
	}
	n, _ := res.RowsAffected()
	return int(n), nil
}

// PurgeTokens deletes expired tokens, used or not, and returns how many.
// A used token is kept until it expires so that a second use is answered
// like any bad token.
func (r *Registry) PurgeTokens(ctx context.Context, now time.Time) (int, error) {
	res, err := r.db.Exec(ctx, `DELETE FROM node_tokens WHERE expires_at <= ?`, now.Unix())
	if err != nil {
		return 0, fmt.Errorf("purge tokens: %w", err)
	}
	n, _ := res.RowsAffected()
	return int(n), nil
}

// TokenCount is the number of stored tokens that could still enroll.
func (r *Registry) TokenCount(ctx context.Context, now time.Time) (int, error) {
	var n int
	err := r.db.QueryRow(ctx, `SELECT COUNT(*) FROM node_tokens WHERE used_at = 0 AND expires_at > ?`, now.Unix()).Scan(&n)
	return n, err
}

func newSecret() (string, error) {
	var b [20]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:])), nil
}

// NewToken makes a one-time enrollment token for cluster, valid for ttl.
func (r *Registry) NewToken(ctx context.Context, ca *pki.CA, cluster string, ttl time.Duration) (string, error) {
	if _, err := r.Cluster(ctx, cluster); err != nil {
		return "", err
	}
	secret, err := newSecret()
	if err != nil {
		return "", err
	}
	now := time.Now()
	_, err = r.db.Exec(ctx, `INSERT INTO node_tokens (hash, cluster, created_at, expires_at, used_at, node_id)
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

// enrollment is what a node presents to enroll.
type enrollment struct {
	Token, Hostname, Hypervisor string
	MACs                        []string
	Capacity                    nodeapi.Capacity
	RemoteIP                    string // where the request came from
}

// enroll spends a token and records the node, in one transaction, and
// returns it. sign issues the certificate for the node ID. A host-bound
// token enrolls only the node with that host's name and MAC; when that
// host already has a node (it was reinstalled) the node keeps its ID and
// gets the new certificate, so no stale duplicate is left. The capacity
// placement counts is what the node declares within its cluster's limit;
// the node is new (unreviewed) until an operator approves it.
func (r *Registry) enroll(ctx context.Context, e enrollment, now time.Time,
	sign func(nodeID string) (serial string, err error)) (Node, error) {
	secret, _, err := nodeapi.ParseToken(e.Token)
	if err != nil {
		return Node{}, ErrBadToken
	}
	declared := nonNegative(e.Capacity)
	n := Node{Hostname: e.Hostname, Declared: declared, Hypervisor: e.Hypervisor, Enrolled: now, LastHeartbeat: now, State: NodeUp}
	err = r.db.InTx(ctx, func(tx *store.Tx) error {
		var cluster, boundHost, boundMAC, boundIP string
		var expires, used int64
		err := tx.QueryRow(ctx, `SELECT cluster, expires_at, used_at, hostname, mac, ip FROM node_tokens WHERE hash = ?`, hashSecret(secret)).
			Scan(&cluster, &expires, &used, &boundHost, &boundMAC, &boundIP)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrBadToken
		}
		if err != nil {
			return err
		}
		if used != 0 || now.Unix() >= expires {
			return ErrBadToken
		}
		if boundHost != "" && (e.Hostname != boundHost || !slices.ContainsFunc(e.MACs, func(m string) bool { return strings.EqualFold(strings.TrimSpace(m), boundMAC) })) {
			return fmt.Errorf("%w %s (%s)", ErrTokenIdentity, boundHost, boundMAC)
		}
		if boundIP != "" && e.RemoteIP != boundIP {
			return fmt.Errorf("%w %s: enrollment must come from %s, not %s", ErrTokenIdentity, boundHost, boundIP, e.RemoteIP)
		}
		c, err := scanCluster(tx.QueryRow(ctx, `SELECT `+clusterCols+` FROM clusters WHERE name = ?`, cluster))
		if err != nil {
			return fmt.Errorf("cluster %s: %w", cluster, err)
		}
		n.Cluster = cluster
		n.Approved = minCap(declared, c.Limit())
		n.Capacity = n.Approved
		var old string
		if boundHost != "" {
			err := tx.QueryRow(ctx, `SELECT id FROM nodes WHERE cluster = ? AND hostname = ? ORDER BY enrolled_at DESC`, cluster, boundHost).Scan(&old)
			if err != nil && !errors.Is(err, sql.ErrNoRows) {
				return err
			}
		}
		n.ID = old
		if n.ID == "" {
			n.ID = newNodeID()
		}
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
		if old != "" {
			// Reinstalled: the same node, a new key. Older duplicates of
			// the host (from before host binding) go.
			if _, err := tx.Exec(ctx, `DELETE FROM nodes WHERE cluster = ? AND hostname = ? AND id <> ?`, cluster, boundHost, old); err != nil {
				return err
			}
			_, err = tx.Exec(ctx, `UPDATE nodes SET cores = ?, memory_mib = ?, disk_gib = ?, hypervisor = ?, cert_serial = ?,
				enrolled_at = ?, last_heartbeat = ?, state = ?, declared_cores = ?, declared_memory_mib = ?, declared_disk_gib = ?,
				approved_cores = ?, approved_memory_mib = ?, approved_disk_gib = ?, reviewed = 0 WHERE id = ?`,
				n.Capacity.Cores, n.Capacity.MemoryMiB, n.Capacity.DiskGiB, e.Hypervisor, n.CertSerial, now.UnixMilli(), now.UnixMilli(), NodeUp,
				declared.Cores, declared.MemoryMiB, declared.DiskGiB, n.Approved.Cores, n.Approved.MemoryMiB, n.Approved.DiskGiB, old)
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO nodes (`+nodeCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0)`,
			n.ID, n.Cluster, n.Hostname, n.Capacity.Cores, n.Capacity.MemoryMiB, n.Capacity.DiskGiB, e.Hypervisor, n.CertSerial,
			now.UnixMilli(), now.UnixMilli(), NodeUp, declared.Cores, declared.MemoryMiB, declared.DiskGiB,
			n.Approved.Cores, n.Approved.MemoryMiB, n.Approved.DiskGiB)
		return err
	})
	if err != nil {
		if errors.Is(err, ErrBadToken) || errors.Is(err, ErrTokenIdentity) || errors.Is(err, pki.ErrBadCSR) {
			return Node{}, err
		}
		return Node{}, fmt.Errorf("enroll %s: %w", e.Hostname, err)
	}
	// A re-enrolled node's old certificate stops working here at once.
	r.nodes.forget(n.ID)
	return n, nil
}

func newNodeID() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return "node-" + hex.EncodeToString(b[:])
}
