package controller

import (
	"context"
	"database/sql"
	"fmt"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"ironbark/internal/nodeapi"
)

// Placement needs every node's usage, under the placement lock, on every
// launch. Reading node_usage whole each time cost a row per node per
// launch (10,000 rows on PostgreSQL at 10,000 nodes, most of a launch's
// time under the lock). usageCache keeps the last whole read and adds
// this controller's own launches to it, and trusts that while the
// database's launch sequence (launch_seq, bumped by every launch in its
// transaction) says no other controller has launched since. The whole
// read is redone in the background every usageRefresh, not by the
// placement that finds it old (it holds the placement lock).
//
// Only launches add usage; instances end everywhere (terminations, node
// reports, failures) without touching the sequence. A cache that has not
// seen an end counts the instance still: it may refuse a launch that
// would fit (Place then retries on a fresh read), never overfill a node.
// It is read whole again every usageRefresh so ends reach it.

// usageRefresh is how old a whole read of node_usage may be before a
// background read replaces it; usageMaxAge, how old it may be at all.
const (
	usageRefresh = 2 * time.Second
	usageMaxAge  = 10 * time.Second
)

// NodeUsages is every node's usage at one moment: a whole read of
// node_usage and the launches this controller committed since.
type NodeUsages struct {
	read, since map[string]nodeapi.NodeUsage
	// readID names read's contents (read maps are never changed once
	// made): placement keeps what it built from one read (BaseID).
	readID uint64
	// batch is the usage of the launches placed before this one in its
	// batch, not committed yet (launchqueue.go).
	batch map[string]nodeapi.NodeUsage
}

// Of is one node's usage.
func (u NodeUsages) Of(node string) nodeapi.NodeUsage {
	a := u.read[node]
	if b, ok := u.since[node]; ok {
		a = addNodeUsage(a, b)
	}
	if b, ok := u.batch[node]; ok {
		a = addNodeUsage(a, b)
	}
	return a
}

// UsageOf makes NodeUsages from a map (tests, other ledgers), which must
// not change after.
func UsageOf(m map[string]nodeapi.NodeUsage) NodeUsages {
	return NodeUsages{read: m, readID: usageReads.Add(1)}
}

// usageReads numbers whole reads of usage (NodeUsages.readID).
var usageReads atomic.Uint64

// BaseID names the whole read u adds its recent launches to: two
// NodeUsages with one BaseID have the same BaseOf for every node.
func (u NodeUsages) BaseID() uint64 { return u.readID }

// BaseOf is one node's usage as of the whole read, without the launches
// since (EachRecent).
func (u NodeUsages) BaseOf(node string) nodeapi.NodeUsage { return u.read[node] }

// EachRecent calls f with the usage Of adds to BaseOf: this controller's
// launches since the whole read and the batch's before this launch. A
// node may come twice; Of(node) is BaseOf(node) plus all of its calls.
func (u NodeUsages) EachRecent(f func(node string, nu nodeapi.NodeUsage)) {
	for node, nu := range u.since {
		f(node, nu)
	}
	for node, nu := range u.batch {
		f(node, nu)
	}
}

func addNodeUsage(a, b nodeapi.NodeUsage) nodeapi.NodeUsage {
	a.Cores += b.Cores
	a.MemoryMiB += b.MemoryMiB
	a.DiskGiB += b.DiskGiB
	a.Instances += b.Instances
	return a
}

type usageCache struct {
	mu  sync.Mutex
	u   NodeUsages // read and since are never changed once here: replaced
	seq int64      // the launch sequence u includes
	at  time.Time  // when u.read was read; zero: no read to trust
	// reading: a background whole read is under way.
	reading bool
	// own is this controller's launches since u.read's read (at launch
	// sequence readSeq), in order: a whole read that finishes behind some
	// of them is brought up to date with them instead of dropped. Under a
	// steady stream of launches every background read finished behind
	// one, none was taken, and every usageMaxAge a launch read whole
	// under the placement lock (about 1 s at 10,000 nodes and 100,000
	// instances on PostgreSQL, with the launches behind it queued).
	readSeq int64
	own     []ownLaunch
}

// ownLaunch is one launch's usage by node, at its launch sequence.
type ownLaunch struct {
	seq   int64
	usage map[string]nodeapi.NodeUsage
}

// launchSeqKey marks a context with the launch sequence its placement
// read under the placement lock (withLaunchSeq).
type launchSeqKey struct{}

// withLaunchSeq gives the placement under way the launch sequence its
// transaction read after taking the placement lock: usage checks the
// cache against it instead of reading it again. Read under the lock, it
// is the sequence of the last launch committed anywhere, as usage's own
// read would be.
func withLaunchSeq(ctx context.Context, seq int64) context.Context {
	return context.WithValue(ctx, launchSeqKey{}, seq)
}

// usage answers from the cache when the launch sequence says it is
// whole, else reads node_usage whole.
func (c *Cloud) usage(ctx context.Context) (NodeUsages, bool, error) {
	u, cached, err := c.committedUsage(ctx)
	u.batch = batchUsageOf(ctx)
	return u, cached, err
}

func (c *Cloud) committedUsage(ctx context.Context) (NodeUsages, bool, error) {
	seq, ok := ctx.Value(launchSeqKey{}).(int64)
	if !ok {
		if err := c.db.QueryRow(ctx, `SELECT seq FROM launch_seq`).Scan(&seq); err != nil {
			return NodeUsages{}, false, fmt.Errorf("launch sequence: %w", err)
		}
	}
	uc := &c.usageCache
	uc.mu.Lock()
	if age := time.Since(uc.at); !uc.at.IsZero() && uc.seq == seq && age < usageMaxAge {
		// Past usageRefresh, a background read brings the ends in
		// while placement goes on with what it has (counting them).
		if age >= usageRefresh && !uc.reading {
			uc.reading = true
			go c.refreshUsage()
		}
		u := uc.u
		uc.mu.Unlock()
		return u, true, nil
	}
	uc.mu.Unlock()
	u, err := c.readUsageInto(ctx)
	return u, false, err
}

// readUsageInto reads node_usage whole and keeps it in the cache unless
// the cache already holds a later launch.
func (c *Cloud) readUsageInto(ctx context.Context) (NodeUsages, error) {
	u, seq, err := c.readUsage(ctx)
	if err != nil {
		return NodeUsages{}, err
	}
	return c.adoptUsage(u, seq), nil
}

// adoptUsage keeps a whole read at launch sequence seq in the cache, as
// read or brought up to date with this controller's launches since, and
// returns it so; a read behind another controller's launch is not kept.
func (c *Cloud) adoptUsage(u NodeUsages, seq int64) NodeUsages {
	uc := &c.usageCache
	uc.mu.Lock()
	defer uc.mu.Unlock()
	switch {
	case seq >= uc.seq:
		uc.u, uc.seq, uc.at = u, seq, time.Now()
		uc.readSeq, uc.own = seq, nil
	case !uc.at.IsZero() && seq >= uc.readSeq:
		// Behind the cache by launches of this controller only (the
		// cache's read is at readSeq or before, and every launch after
		// that is in own): the read with them added.
		keep := uc.own[:0:0]
		since := map[string]nodeapi.NodeUsage{}
		for _, l := range uc.own {
			if l.seq <= seq {
				continue
			}
			keep = append(keep, l)
			for node, nu := range l.usage {
				since[node] = addNodeUsage(since[node], nu)
			}
		}
		uc.u, uc.at = NodeUsages{read: u.read, readID: u.readID, since: since}, time.Now()
		uc.readSeq, uc.own = seq, keep
		u = uc.u
	}
	// Otherwise a read that lost a race with a later one does not
	// replace it.
	return u
}

func (c *Cloud) refreshUsage() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := c.readUsageInto(ctx); err != nil {
		c.log.Warn("node usage for placement", "err", err)
	}
	c.usageCache.mu.Lock()
	c.usageCache.reading = false
	c.usageCache.mu.Unlock()
}

// readUsage reads node_usage whole, with the launch sequence it is as of
// (one statement: one snapshot on both engines).
func (c *Cloud) readUsage(ctx context.Context) (NodeUsages, int64, error) {
	rows, err := c.db.Query(ctx, `SELECT s.seq, u.node_id, u.vm_type, u.instances
		FROM launch_seq s LEFT JOIN node_usage u ON u.instances > 0`)
	if err != nil {
		return NodeUsages{}, 0, fmt.Errorf("usage: %w", err)
	}
	defer rows.Close()
	out := map[string]nodeapi.NodeUsage{}
	var seq int64
	for rows.Next() {
		var node, vt sql.NullString
		var n sql.NullInt64
		if err := rows.Scan(&seq, &node, &vt, &n); err != nil {
			return NodeUsages{}, 0, err
		}
		if !node.Valid {
			continue // no usage at all: the sequence alone
		}
		out[node.String] = addNodeUsage(out[node.String], c.usageOfType(vt.String, int(n.Int64)))
	}
	if err := rows.Err(); err != nil {
		return NodeUsages{}, 0, err
	}
	return UsageOf(out), seq, nil
}

func (c *Cloud) usageOfType(vmType string, n int) nodeapi.NodeUsage {
	t := c.vmTypes[vmType]
	return nodeapi.NodeUsage{Cores: n * t.Cores, MemoryMiB: n * t.MemoryMiB, DiskGiB: n * t.DiskGiB, Instances: n}
}

// launched adds a committed launch (sequence seq, instances per node) to
// the cache when the cache holds every launch before it; otherwise the
// next placement reads whole.
func (c *Cloud) launched(seq int64, vmType string, perNode map[string]int) {
	uc := &c.usageCache
	uc.mu.Lock()
	defer uc.mu.Unlock()
	if uc.at.IsZero() || uc.seq != seq-1 {
		uc.at = time.Time{}
		return
	}
	since := maps.Clone(uc.u.since)
	if since == nil {
		since = make(map[string]nodeapi.NodeUsage, len(perNode))
	}
	mine := make(map[string]nodeapi.NodeUsage, len(perNode))
	for node, n := range perNode {
		mine[node] = c.usageOfType(vmType, n)
		since[node] = addNodeUsage(since[node], mine[node])
	}
	uc.u = NodeUsages{read: uc.u.read, readID: uc.u.readID, since: since}
	uc.seq = seq
	uc.own = append(uc.own, ownLaunch{seq: seq, usage: mine})
}

// forgetUsage makes the next placement read node_usage whole; it says
// whether the cache was in use (a refusal it made may be stale).
func (c *Cloud) forgetUsage() bool {
	uc := &c.usageCache
	uc.mu.Lock()
	defer uc.mu.Unlock()
	was := !uc.at.IsZero()
	uc.at = time.Time{}
	return was
}

// launchSeqBump counts the launches of a batch (its one parameter: how
// many) in their transaction and returns the last one's sequence number
// (the last statement of the batch's writes); the launches before it have
// the numbers below, in their order.
const launchSeqBump = `UPDATE launch_seq SET seq = seq + ? RETURNING seq`
