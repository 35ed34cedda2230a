package cluster

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
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
	// Install tokens are bound to one host (name and MAC) and one install
	// attempt; hand-made tokens leave these empty.
	{ID: "cluster/0005-token-hostname", SQL: `ALTER TABLE node_tokens ADD COLUMN hostname TEXT NOT NULL DEFAULT ''`},
	{ID: "cluster/0006-token-mac", SQL: `ALTER TABLE node_tokens ADD COLUMN mac TEXT NOT NULL DEFAULT ''`},
	{ID: "cluster/0007-token-attempt", SQL: `ALTER TABLE node_tokens ADD COLUMN attempt TEXT NOT NULL DEFAULT ''`},
	{ID: "cluster/0008-token-attempt-idx", SQL: `CREATE UNIQUE INDEX node_tokens_attempt ON node_tokens (hostname, attempt) WHERE attempt <> ''`},
	// What a node declares apart from what placement counts (cores,
	// memory_mib, disk_gib): the approved capacity bounds the latter.
	{ID: "cluster/0009-node-declared-cores", SQL: `ALTER TABLE nodes ADD COLUMN declared_cores BIGINT NOT NULL DEFAULT 0`},
	{ID: "cluster/0010-node-declared-mem", SQL: `ALTER TABLE nodes ADD COLUMN declared_memory_mib BIGINT NOT NULL DEFAULT 0`},
	{ID: "cluster/0011-node-declared-disk", SQL: `ALTER TABLE nodes ADD COLUMN declared_disk_gib BIGINT NOT NULL DEFAULT 0`},
	{ID: "cluster/0012-node-approved-cores", SQL: `ALTER TABLE nodes ADD COLUMN approved_cores BIGINT NOT NULL DEFAULT 0`},
	{ID: "cluster/0013-node-approved-mem", SQL: `ALTER TABLE nodes ADD COLUMN approved_memory_mib BIGINT NOT NULL DEFAULT 0`},
	{ID: "cluster/0014-node-approved-disk", SQL: `ALTER TABLE nodes ADD COLUMN approved_disk_gib BIGINT NOT NULL DEFAULT 0`},
	{ID: "cluster/0015-node-reviewed", SQL: `ALTER TABLE nodes ADD COLUMN reviewed BIGINT NOT NULL DEFAULT 0`},
	// Nodes enrolled before capacity review count as reviewed at what they
	// reported last.
	{ID: "cluster/0016-node-capacity-backfill", SQL: `UPDATE nodes SET declared_cores = cores, declared_memory_mib = memory_mib,
		declared_disk_gib = disk_gib, approved_cores = cores, approved_memory_mib = memory_mib, approved_disk_gib = disk_gib, reviewed = 1`},
	{ID: "cluster/0017-cluster-max-cores", SQL: `ALTER TABLE clusters ADD COLUMN max_node_cores BIGINT NOT NULL DEFAULT 0`},
	{ID: "cluster/0018-cluster-max-mem", SQL: `ALTER TABLE clusters ADD COLUMN max_node_memory_mib BIGINT NOT NULL DEFAULT 0`},
	{ID: "cluster/0019-cluster-max-disk", SQL: `ALTER TABLE clusters ADD COLUMN max_node_disk_gib BIGINT NOT NULL DEFAULT 0`},
	{ID: "cluster/0020-token-ip", SQL: `ALTER TABLE node_tokens ADD COLUMN ip TEXT NOT NULL DEFAULT ''`},
	// A drained node keeps its instances but gets no new ones.
	{ID: "cluster/0020-node-drained", SQL: `ALTER TABLE nodes ADD COLUMN drained BIGINT NOT NULL DEFAULT 0`},
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
	return n.heardSince(now.Add(-timeout))
}

// heardSince is Live for a node asked by pointer: placement asks it of
// every node per launch, and a Node is too big to copy for that.
func (n *Node) heardSince(cutoff time.Time) bool {
	return n.State == NodeUp && !n.LastHeartbeat.Before(cutoff)
}

// Cluster is an availability zone.
type Cluster struct {
	Name    string
	Policy  string
	Created time.Time
	// NodeLimit bounds what one node of the cluster may offer; a zero
	// field means DefaultNodeLimit's.
	NodeLimit nodeapi.Capacity
	// Network is the cluster's instance networking (network.go).
	Network Network
}

// DefaultNodeLimit bounds a node's capacity in a cluster with no limit of
// its own: well above today's largest hypervisors, far below what a rogue
// node could claim to take every launch.
var DefaultNodeLimit = nodeapi.Capacity{Cores: 512, MemoryMiB: 8 << 20, DiskGiB: 256 << 10}

// Limit is the cluster's per-node limit with the defaults filled in.
func (c Cluster) Limit() nodeapi.Capacity {
	l := c.NodeLimit
	if l.Cores <= 0 {
		l.Cores = DefaultNodeLimit.Cores
	}
	if l.MemoryMiB <= 0 {
		l.MemoryMiB = DefaultNodeLimit.MemoryMiB
	}
	if l.DiskGiB <= 0 {
		l.DiskGiB = DefaultNodeLimit.DiskGiB
	}
	return l
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
	// Declared is what the node says it has; Approved the capacity the
	// operator (or enrollment, within the cluster's limit) accepted.
	// Capacity, what placement counts, is the smaller of the two.
	Declared, Approved nodeapi.Capacity
	// Reviewed is false for a node no operator has approved yet.
	Reviewed bool
	// Drained: placement gives the node no new instances; the ones it
	// runs stay (ironbark node drain / undrain).
	Drained bool
}

// Pending reports whether the node declares more than was approved: the
// difference waits for `ironbark node approve`.
func (n Node) Pending() bool {
	d, a := n.Declared, n.Approved
	return d.Cores > a.Cores || d.MemoryMiB > a.MemoryMiB || d.DiskGiB > a.DiskGiB
}

// Known reports whether a capacity is one a node measured: a node whose
// hypervisor has not answered yet reports no cores or no memory, which
// says nothing about the host.
func Known(c nodeapi.Capacity) bool { return c.Cores > 0 && c.MemoryMiB > 0 }

func minCap(a, b nodeapi.Capacity) nodeapi.Capacity {
	return nodeapi.Capacity{Cores: min(a.Cores, b.Cores), MemoryMiB: min(a.MemoryMiB, b.MemoryMiB), DiskGiB: min(a.DiskGiB, b.DiskGiB)}
}

// ErrNoSuchCluster is returned for an unknown cluster name.
var ErrNoSuchCluster = errors.New("no such cluster")

// ErrClusterExists is returned when adding a cluster twice.
var ErrClusterExists = errors.New("cluster already exists")

// Registry is the store-backed record of clusters, nodes and tokens. The
// CLI uses it directly; the Service wraps it.
type Registry struct {
	db    *store.DB
	beats *beatWriter // heartbeats that only move the time (beats.go)
	nodes nodeCache   // nodes as the node API last read them (nodecache.go)
	reads *nodeReads  // the node API's reads of nodes, gathered (nodereads.go)
	// listed is how many nodes the last whole list held: the next one is
	// sized by it (placement's snapshot reads all 10,000 every second
	// while launches run, and growing the list doubled what it allocated).
	listed atomic.Int64
}

// NewRegistry migrates the cluster tables and returns a registry on db.
func NewRegistry(ctx context.Context, db *store.DB) (*Registry, error) {
	if err := db.Migrate(ctx, append(slices.Clone(Migrations), networkMigrations...)); err != nil {
		return nil, err
	}
	return &Registry{db: db, beats: newBeatWriter(db), reads: newNodeReads(db)}, nil
}

// AddCluster creates a cluster with a scheduling policy.
func (r *Registry) AddCluster(ctx context.Context, name, policy string) error {
	defer r.nodes.forgetClusters()
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
	defer r.nodes.forgetClusters()
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
	rows, err := r.db.Query(ctx, `SELECT `+clusterCols+` FROM clusters ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list clusters: %w", err)
	}
	defer rows.Close()
	var out []Cluster
	for rows.Next() {
		c, err := scanCluster(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// Cluster returns one cluster.
func (r *Registry) Cluster(ctx context.Context, name string) (Cluster, error) {
	c, err := scanCluster(r.db.QueryRow(ctx, `SELECT `+clusterCols+` FROM clusters WHERE name = ?`, name))
	if errors.Is(err, sql.ErrNoRows) {
		return c, fmt.Errorf("%w: %s", ErrNoSuchCluster, name)
	}
	if err != nil {
		return c, fmt.Errorf("cluster %s: %w", name, err)
	}
	return c, nil
}

const clusterCols = `name, policy, created_at, max_node_cores, max_node_memory_mib, max_node_disk_gib,
	network_mode, instance_subnet, public_ips, vlan_min, vlan_max, addrs_per_net`

func scanCluster(sc interface{ Scan(...any) error }) (Cluster, error) {
	var c Cluster
	var created, publicIPs int64
	err := sc.Scan(&c.Name, &c.Policy, &created, &c.NodeLimit.Cores, &c.NodeLimit.MemoryMiB, &c.NodeLimit.DiskGiB,
		&c.Network.Mode, &c.Network.Subnet, &publicIPs, &c.Network.VLANs[0], &c.Network.VLANs[1], &c.Network.AddrsPerNet)
	c.Network.PublicIPs = publicIPs != 0
	c.Created = time.Unix(created, 0).UTC()
	return c, err
}

// SetNodeLimit sets the most one node of the cluster may offer (zero
// fields: the default). Nodes above it are cut down to it at once.
func (r *Registry) SetNodeLimit(ctx context.Context, name string, l nodeapi.Capacity) error {
	if l.Cores < 0 || l.MemoryMiB < 0 || l.DiskGiB < 0 {
		return fmt.Errorf("node limit of %s: negative values", name)
	}
	defer r.nodes.forgetAll()
	return r.db.InTx(ctx, func(tx *store.Tx) error {
		res, err := tx.Exec(ctx, `UPDATE clusters SET max_node_cores = ?, max_node_memory_mib = ?, max_node_disk_gib = ? WHERE name = ?`,
			l.Cores, l.MemoryMiB, l.DiskGiB, name)
		if err != nil {
			return fmt.Errorf("set node limit of %s: %w", name, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("%w: %s", ErrNoSuchCluster, name)
		}
		lim := Cluster{NodeLimit: l}.Limit()
		_, err = tx.Exec(ctx, `UPDATE nodes SET cores = CASE WHEN cores > ? THEN ? ELSE cores END,
			memory_mib = CASE WHEN memory_mib > ? THEN ? ELSE memory_mib END,
			disk_gib = CASE WHEN disk_gib > ? THEN ? ELSE disk_gib END WHERE cluster = ?`,
			lim.Cores, lim.Cores, lim.MemoryMiB, lim.MemoryMiB, lim.DiskGiB, lim.DiskGiB, name)
		if err != nil {
			return fmt.Errorf("apply node limit of %s: %w", name, err)
		}
		return nil
	})
}

// ApproveNode accepts what a node declares (within its cluster's limit) as
// its capacity and marks it reviewed; it returns the node as approved.
func (r *Registry) ApproveNode(ctx context.Context, id string) (Node, error) {
	var n Node
	err := r.db.InTx(ctx, func(tx *store.Tx) error {
		var err error
		n, err = scanNode(tx.QueryRow(ctx, `SELECT `+nodeSelectCols+` FROM nodes WHERE id = ?`, id))
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("node %s: %w", id, store.ErrNotFound)
		}
		if err != nil {
			return err
		}
		c, err := scanCluster(tx.QueryRow(ctx, `SELECT `+clusterCols+` FROM clusters WHERE name = ?`, n.Cluster))
		if err != nil {
			return fmt.Errorf("cluster of %s: %w", id, err)
		}
		n.Approved = minCap(n.Declared, c.Limit())
		n.Capacity, n.Reviewed = n.Approved, true
		_, err = tx.Exec(ctx, `UPDATE nodes SET approved_cores = ?, approved_memory_mib = ?, approved_disk_gib = ?,
			cores = ?, memory_mib = ?, disk_gib = ?, reviewed = 1 WHERE id = ?`,
			n.Approved.Cores, n.Approved.MemoryMiB, n.Approved.DiskGiB, n.Capacity.Cores, n.Capacity.MemoryMiB, n.Capacity.DiskGiB, id)
		return err
	})
	r.nodes.forget(id)
	if err != nil {
		return Node{}, fmt.Errorf("approve node %s: %w", id, err)
	}
	return n, nil
}

const nodeCols = `id, cluster, hostname, cores, memory_mib, disk_gib, hypervisor, cert_serial, enrolled_at, last_heartbeat, state,
	declared_cores, declared_memory_mib, declared_disk_gib, approved_cores, approved_memory_mib, approved_disk_gib, reviewed`

// nodeSelectCols are what scanNode reads: nodeCols (what enrollment
// inserts) and the columns with defaults.
const nodeSelectCols = nodeCols + `, drained`

func scanNode(sc interface{ Scan(...any) error }) (Node, error) {
	var n Node
	var enrolled, hb, reviewed, drained int64
	err := sc.Scan(&n.ID, &n.Cluster, &n.Hostname, &n.Capacity.Cores, &n.Capacity.MemoryMiB, &n.Capacity.DiskGiB,
		&n.Hypervisor, &n.CertSerial, &enrolled, &hb, &n.State,
		&n.Declared.Cores, &n.Declared.MemoryMiB, &n.Declared.DiskGiB, &n.Approved.Cores, &n.Approved.MemoryMiB, &n.Approved.DiskGiB, &reviewed, &drained)
	n.Reviewed = reviewed != 0
	n.Drained = drained != 0
	n.Enrolled = time.UnixMilli(enrolled).UTC()
	n.LastHeartbeat = time.UnixMilli(hb).UTC()
	return n, err
}

// Nodes lists nodes, of one cluster or ("") all, by ID.
func (r *Registry) Nodes(ctx context.Context, cluster string) ([]Node, error) {
	q := `SELECT ` + nodeSelectCols + ` FROM nodes`
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
	if cluster == "" {
		out = make([]Node, 0, r.listed.Load()+16)
	}
	for rows.Next() {
		n, err := scanNode(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if cluster == "" {
		r.listed.Store(int64(len(out)))
	}
	return out, nil
}

// SetDrained drains a node (no new instances are placed on it) or puts
// it back in service.
func (r *Registry) SetDrained(ctx context.Context, id string, drained bool) error {
	v := 0
	if drained {
		v = 1
	}
	res, err := r.db.Exec(ctx, `UPDATE nodes SET drained = ? WHERE id = ?`, v, id)
	if err != nil {
		return fmt.Errorf("drain node %s: %w", id, err)
	}
	r.nodes.forget(id)
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		return fmt.Errorf("node %s: %w", id, store.ErrNotFound)
	}
	return nil
}

// Node returns one node.
func (r *Registry) Node(ctx context.Context, id string) (Node, error) {
	n, err := scanNode(r.db.QueryRow(ctx, `SELECT `+nodeSelectCols+` FROM nodes WHERE id = ?`, id))
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
	r.nodes.forget(id)
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("node %s: %w", id, store.ErrNotFound)
	}
	return nil
}

// heartbeat records a node's report; it returns false when the node or its
// certificate serial is unknown (removed or re-enrolled). What the node
// declares is kept; what placement counts stays within the approved
// capacity and the cluster's limit, so a node cannot grow by saying so.
//
// n may come from the node cache (fresh false): a heartbeat that would
// write more than the time, or whose time finds the row changed, then
// returns errStaleNode, for the caller to read the node again.
func (r *Registry) heartbeat(ctx context.Context, n Node, fresh bool, hostname, hypervisor string, c nodeapi.Capacity, now time.Time, rec NodeSilences) (bool, error) {
	// The cluster's limit, like the node, may come from the cache only
	// where the heartbeat writes nothing but the time.
	cl, err := r.clusterOf(ctx, n.Cluster, !fresh)
	if err != nil {
		return false, fmt.Errorf("heartbeat %s: %w", n.ID, err)
	}
	approvedBefore := n.Approved
	c = nonNegative(c)
	if !Known(c) {
		// The hypervisor has not answered (yet, or since a restart of
		// the agent): the node is alive, and what it declared stands.
		c = n.Declared
	}
	if !Known(n.Approved) && Known(c) {
		// Enrolled without a capacity (its hypervisor did not answer
		// then): the first one it reports is what it enrolled with, and
		// is approved as enrollment would have (within the cluster's
		// limit, still unreviewed). Any later growth waits for review.
		n.Approved = minCap(c, cl.Limit())
	}
	eff := minCap(minCap(c, n.Approved), cl.Limit())
	update := func(q store.Querier) (bool, error) {
		res, err := q.Exec(ctx, `UPDATE nodes SET hostname = ?, cores = ?, memory_mib = ?, disk_gib = ?, hypervisor = ?,
		last_heartbeat = ?, state = ?, declared_cores = ?, declared_memory_mib = ?, declared_disk_gib = ?,
		approved_cores = ?, approved_memory_mib = ?, approved_disk_gib = ? WHERE id = ? AND cert_serial = ?`,
			hostname, eff.Cores, eff.MemoryMiB, eff.DiskGiB, hypervisor, now.UnixMilli(), NodeUp, c.Cores, c.MemoryMiB, c.DiskGiB,
			n.Approved.Cores, n.Approved.MemoryMiB, n.Approved.DiskGiB, n.ID, n.CertSerial)
		if err != nil {
			return false, err
		}
		k, _ := res.RowsAffected()
		return k > 0, nil
	}
	var ok bool
	timeOnly := n.State == NodeUp && hostname == n.Hostname && hypervisor == n.Hypervisor && eff == n.Capacity &&
		c == n.Declared && n.Approved == approvedBefore
	if timeOnly {
		// Only the time moves: one of the many heartbeats that do
		// nothing else, written with the others arriving meanwhile.
		ok, err = r.beats.record(ctx, n.ID, n.CertSerial, now.UnixMilli())
		if err == nil && !ok {
			// Removed, re-enrolled or marked down since n was read.
			r.nodes.forget(n.ID)
			return false, errStaleNode
		}
	} else if !fresh {
		return false, errStaleNode
	} else if n.State == NodeUp || rec == nil {
		ok, err = update(r.db)
	} else {
		// Back from a silence: the record says so in the same transaction.
		err = r.db.InTx(ctx, func(tx *store.Tx) error {
			var err error
			if ok, err = update(tx); err != nil || !ok {
				return err
			}
			return rec.NodeSilence(ctx, tx, n.ID, false, now)
		})
	}
	if err != nil {
		return false, fmt.Errorf("heartbeat %s: %w", n.ID, err)
	}
	if !timeOnly {
		r.nodes.forget(n.ID) // what the cache holds of it changed
	}
	return ok, nil
}

// markDown sets nodes whose last heartbeat is older than cutoff to down and
// returns their IDs; rec, when not nil, records each silence from the
// node's last heartbeat, in the same transaction.
func (r *Registry) markDown(ctx context.Context, cutoff time.Time, rec NodeSilences) ([]string, error) {
	var ids []string
	err := r.db.InTx(ctx, func(tx *store.Tx) error {
		ids = ids[:0]
		rows, err := tx.Query(ctx, `SELECT id, last_heartbeat FROM nodes WHERE state = ? AND last_heartbeat < ?`, NodeUp, cutoff.UnixMilli())
		if err != nil {
			return err
		}
		var last []int64
		for rows.Next() {
			var id string
			var hb int64
			if err := rows.Scan(&id, &hb); err != nil {
				rows.Close()
				return err
			}
			ids, last = append(ids, id), append(last, hb)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if _, err = tx.Exec(ctx, `UPDATE nodes SET state = ? WHERE state = ? AND last_heartbeat < ?`, NodeDown, NodeUp, cutoff.UnixMilli()); err != nil {
			return err
		}
		if rec == nil {
			return nil
		}
		for i, id := range ids {
			if err := rec.NodeSilence(ctx, tx, id, true, time.UnixMilli(last[i])); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("mark nodes down: %w", err)
	}
	for _, id := range ids {
		r.nodes.forget(id)
	}
	return ids, nil
}

func nonNegative(c nodeapi.Capacity) nodeapi.Capacity {
	return nodeapi.Capacity{Cores: max(c.Cores, 0), MemoryMiB: max(c.MemoryMiB, 0), DiskGiB: max(c.DiskGiB, 0)}
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
