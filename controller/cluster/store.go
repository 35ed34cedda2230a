package cluster

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"ironbark/internal/nodeapi"
	"ironbark/internal/store"
)

// Migrations are the cluster tables. Callers that open the store without a
// Service (the CLI) run them too.
var Migrations = []store.Migration{
	{ID: "cluster/0001-clusters", SQL: `CREATE TABLE clusters (
		name TEXT PRIMARY KEY,
		policy TEXT NOT NULL,
		created_at BIGINT NOT NULL)`},
	{ID: "cluster/0002-nodes", SQL: `CREATE TABLE nodes (
		id TEXT PRIMARY KEY,
		cluster TEXT NOT NULL REFERENCES clusters(name),
		hostname TEXT NOT NULL,
		cores BIGINT NOT NULL,
		memory_mib BIGINT NOT NULL,
		disk_gib BIGINT NOT NULL,
		hypervisor TEXT NOT NULL,
		cert_serial TEXT NOT NULL,
		enrolled_at BIGINT NOT NULL,
		last_heartbeat BIGINT NOT NULL,
		state TEXT NOT NULL)`},
	{ID: "cluster/0003-node-tokens", SQL: `CREATE TABLE node_tokens (
		hash TEXT PRIMARY KEY,
		cluster TEXT NOT NULL REFERENCES clusters(name),
		created_at BIGINT NOT NULL,
		expires_at BIGINT NOT NULL,
		used_at BIGINT NOT NULL,
		node_id TEXT NOT NULL)`},
	{ID: "cluster/0004-nodes-cluster-idx", SQL: `CREATE INDEX nodes_cluster ON nodes (cluster, id)`},
}

// Node states.
const (
	NodeUp   = "up"   // heartbeats arrive
	NodeDown = "down" // missed heartbeats for longer than the timeout
)

// DefaultHeartbeatTimeout is how long a node may stay silent before it
// counts as down (three heartbeats of the default 10 s).
const DefaultHeartbeatTimeout = 30 * time.Second

// Live reports whether the node is up and heard from within timeout of now.
func (n Node) Live(now time.Time, timeout time.Duration) bool {
	return n.State == NodeUp && !n.LastHeartbeat.Before(now.Add(-timeout))
}

// Cluster is an availability zone.
type Cluster struct {
	Name    string
	Policy  string
	Created time.Time
}

// Node is an enrolled node.
type Node struct {
	ID            string
	Cluster       string
	Hostname      string
	Capacity      nodeapi.Capacity
	Hypervisor    string
	CertSerial    string
	Enrolled      time.Time
	LastHeartbeat time.Time
	State         string
}

// ErrNoSuchCluster is returned for an unknown cluster name.
var ErrNoSuchCluster = errors.New("no such cluster")

// ErrClusterExists is returned when adding a cluster twice.
var ErrClusterExists = errors.New("cluster already exists")

// Registry is the store-backed record of clusters, nodes and tokens. The
// CLI uses it directly; the Service wraps it.
type Registry struct {
	db *store.DB
}

// NewRegistry migrates the cluster tables and returns a registry on db.
func NewRegistry(ctx context.Context, db *store.DB) (*Registry, error) {
	if err := db.Migrate(ctx, Migrations); err != nil {
		return nil, err
	}
	return &Registry{db: db}, nil
}

// AddCluster creates a cluster with a scheduling policy.
func (r *Registry) AddCluster(ctx context.Context, name, policy string) error {
	if !validName(name) {
		return fmt.Errorf("cluster name %q: use letters, digits, '-' and '_' (at most 63)", name)
	}
	_, err := r.db.Exec(ctx, `INSERT INTO clusters (name, policy, created_at) VALUES (?, ?, ?)`,
		name, policy, time.Now().Unix())
	if store.IsUniqueViolation(err) {
		return fmt.Errorf("%w: %s", ErrClusterExists, name)
	}
	if err != nil {
		return fmt.Errorf("add cluster %s: %w", name, err)
	}
	return nil
}

// SetPolicy changes a cluster's scheduling policy.
func (r *Registry) SetPolicy(ctx context.Context, name, policy string) error {
	res, err := r.db.Exec(ctx, `UPDATE clusters SET policy = ? WHERE name = ?`, policy, name)
	if err != nil {
		return fmt.Errorf("set policy of %s: %w", name, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("%w: %s", ErrNoSuchCluster, name)
	}
	return nil
}

// Clusters lists the clusters by name.
func (r *Registry) Clusters(ctx context.Context) ([]Cluster, error) {
	rows, err := r.db.Query(ctx, `SELECT name, policy, created_at FROM clusters ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list clusters: %w", err)
	}
	defer rows.Close()
	var out []Cluster
	for rows.Next() {
		var c Cluster
		var created int64
		if err := rows.Scan(&c.Name, &c.Policy, &created); err != nil {
			return nil, err
		}
		c.Created = time.Unix(created, 0).UTC()
		out = append(out, c)
	}
	return out, rows.Err()
}

// Cluster returns one cluster.
func (r *Registry) Cluster(ctx context.Context, name string) (Cluster, error) {
	c := Cluster{Name: name}
	var created int64
	err := r.db.QueryRow(ctx, `SELECT policy, created_at FROM clusters WHERE name = ?`, name).Scan(&c.Policy, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return c, fmt.Errorf("%w: %s", ErrNoSuchCluster, name)
	}
	if err != nil {
		return c, fmt.Errorf("cluster %s: %w", name, err)
	}
	c.Created = time.Unix(created, 0).UTC()
	return c, nil
}

const nodeCols = `id, cluster, hostname, cores, memory_mib, disk_gib, hypervisor, cert_serial, enrolled_at, last_heartbeat, state`

func scanNode(sc interface{ Scan(...any) error }) (Node, error) {
	var n Node
	var enrolled, hb int64
	err := sc.Scan(&n.ID, &n.Cluster, &n.Hostname, &n.Capacity.Cores, &n.Capacity.MemoryMiB, &n.Capacity.DiskGiB,
		&n.Hypervisor, &n.CertSerial, &enrolled, &hb, &n.State)
	n.Enrolled = time.UnixMilli(enrolled).UTC()
	n.LastHeartbeat = time.UnixMilli(hb).UTC()
	return n, err
}

// Nodes lists nodes, of one cluster or ("") all, by ID.
func (r *Registry) Nodes(ctx context.Context, cluster string) ([]Node, error) {
	q := `SELECT ` + nodeCols + ` FROM nodes`
	var args []any
	if cluster != "" {
		q += ` WHERE cluster = ?`
		args = append(args, cluster)
	}
	rows, err := r.db.Query(ctx, q+` ORDER BY id`, args...)
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	defer rows.Close()
	var out []Node
	for rows.Next() {
		n, err := scanNode(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, rows.Err()
}

// Node returns one node.
func (r *Registry) Node(ctx context.Context, id string) (Node, error) {
	n, err := scanNode(r.db.QueryRow(ctx, `SELECT `+nodeCols+` FROM nodes WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return n, fmt.Errorf("node %s: %w", id, store.ErrNotFound)
	}
	return n, err
}

// RemoveNode forgets a node; its certificate stops working at once.
func (r *Registry) RemoveNode(ctx context.Context, id string) error {
	res, err := r.db.Exec(ctx, `DELETE FROM nodes WHERE id = ?`, id)
	if err != nil {
		return fmt.Errorf("remove node %s: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("node %s: %w", id, store.ErrNotFound)
	}
	return nil
}

// heartbeat records a node's report; it returns false when the node or its
// certificate serial is unknown (removed or re-enrolled).
func (r *Registry) heartbeat(ctx context.Context, id, serial, hostname, hypervisor string, c nodeapi.Capacity, now time.Time) (bool, error) {
	res, err := r.db.Exec(ctx, `UPDATE nodes SET hostname = ?, cores = ?, memory_mib = ?, disk_gib = ?, hypervisor = ?,
		last_heartbeat = ?, state = ? WHERE id = ? AND cert_serial = ?`,
		hostname, c.Cores, c.MemoryMiB, c.DiskGiB, hypervisor, now.UnixMilli(), NodeUp, id, serial)
	if err != nil {
		return false, fmt.Errorf("heartbeat %s: %w", id, err)
	}
	n, _ := res.RowsAffected()
	return n > 0, nil
}

// markDown sets nodes whose last heartbeat is older than cutoff to down and
// returns their IDs.
func (r *Registry) markDown(ctx context.Context, cutoff time.Time) ([]string, error) {
	var ids []string
	err := r.db.InTx(ctx, func(tx *store.Tx) error {
		ids = ids[:0]
		rows, err := tx.Query(ctx, `SELECT id FROM nodes WHERE state = ? AND last_heartbeat < ?`, NodeUp, cutoff.UnixMilli())
		if err != nil {
			return err
		}
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return err
			}
			ids = append(ids, id)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE nodes SET state = ? WHERE state = ? AND last_heartbeat < ?`, NodeDown, NodeUp, cutoff.UnixMilli())
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("mark nodes down: %w", err)
	}
	return ids, nil
}

func validName(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
