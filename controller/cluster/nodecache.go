package cluster

import (
	"context"
	"errors"
	"sync"
	"time"
)

// Every node API call is authenticated against the node's row (its
// certificate serial must be the current one), and at 10,000 nodes those
// reads were a tenth of the controller's CPU and a database round trip per
// heartbeat and per re-poll. nodeCache keeps each node as last read for
// nodeCacheTTL.
//
// What a cached node may let through, and what stops it:
//   - A heartbeat writes its time only where the row still has the
//     serial and is up (beats.go); otherwise, and whenever it would write
//     more than the time, it is redone on a fresh read (errStaleNode), so
//     a cached node never writes old values over new ones.
//   - A certificate whose serial is not the cached one is checked on a
//     fresh read (a re-enrolled node is let in at once).
//   - Changes made through this controller's Registry drop the entry. A
//     node removed or re-enrolled elsewhere (the ironbark CLI, another
//     controller) is refused at its next heartbeat, and on its other
//     calls (instance lists, image blobs) once its entry is older than
//     nodeCacheTTL.
type nodeCache struct {
	mu       sync.Mutex
	m        map[string]cachedNode
	clusters map[string]cachedCluster // the clusters' limits, for heartbeats
	// list is every cluster as read at listAt, for placement: it read
	// them under the placement lock, a round trip every launch waited
	// for. A cluster changed elsewhere is seen within nodeCacheTTL, and
	// a zone asked for that the list lacks is read afresh.
	list   []Cluster
	listAt time.Time
}

type cachedCluster struct {
	c  Cluster
	at time.Time
}

type cachedNode struct {
	n  Node
	at time.Time
}

const nodeCacheTTL = 2 * time.Second

// errStaleNode: the node given was older than what the heartbeat found.
var errStaleNode = errors.New("node changed since it was read")

func (c *nodeCache) get(id, serial string) (Node, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[id]
	if !ok || e.n.CertSerial != serial || time.Since(e.at) >= nodeCacheTTL {
		return Node{}, false
	}
	return e.n, true
}

func (c *nodeCache) put(n Node, at time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]cachedNode{}
	}
	c.m[n.ID] = cachedNode{n: n, at: at}
}

func (c *nodeCache) forget(id string) {
	c.mu.Lock()
	delete(c.m, id)
	c.mu.Unlock()
}

func (c *nodeCache) forgetAll() {
	c.mu.Lock()
	c.m, c.clusters, c.list = nil, nil, nil
	c.mu.Unlock()
}

// forgetClusters drops the cached clusters after a change of one.
func (c *nodeCache) forgetClusters() {
	c.mu.Lock()
	c.clusters, c.list = nil, nil
	c.mu.Unlock()
}

// clusterList is every cluster, from the cache when it is fresh enough.
func (r *Registry) clusterList(ctx context.Context) ([]Cluster, error) {
	c := &r.nodes
	c.mu.Lock()
	list, at := c.list, c.listAt
	c.mu.Unlock()
	if list != nil && time.Since(at) < nodeCacheTTL {
		return list, nil
	}
	read := time.Now()
	list, err := r.Clusters(ctx)
	if err != nil {
		return nil, err
	}
	if list == nil {
		list = []Cluster{}
	}
	c.mu.Lock()
	c.list, c.listAt = list, read
	c.mu.Unlock()
	return list, nil
}

// clusterOf is a cluster, from the cache when it may.
func (r *Registry) clusterOf(ctx context.Context, name string, mayCache bool) (Cluster, error) {
	c := &r.nodes
	if mayCache {
		c.mu.Lock()
		e, ok := c.clusters[name]
		c.mu.Unlock()
		if ok && time.Since(e.at) < nodeCacheTTL {
			return e.c, nil
		}
	}
	read := time.Now()
	cl, err := r.Cluster(ctx, name)
	if err != nil {
		return cl, err
	}
	c.mu.Lock()
	if c.clusters == nil {
		c.clusters = map[string]cachedCluster{}
	}
	c.clusters[name] = cachedCluster{c: cl, at: read}
	c.mu.Unlock()
	return cl, nil
}

// authNode returns the enrolled node whose certificate this is, from the
// cache when mayCache allows, or errNotEnrolled.
func (r *Registry) authNode(ctx context.Context, id, serial string, mayCache bool) (Node, error) {
	if mayCache {
		if n, ok := r.nodes.get(id, serial); ok {
			return n, nil
		}
	}
	read := time.Now()
	n, err := r.reads.read(ctx, id)
	if err != nil {
		return Node{}, err
	}
	if n.CertSerial != serial {
		return Node{}, errNotEnrolled
	}
	r.nodes.put(n, read)
	return n, nil
}

// errNotEnrolled: the certificate's node is gone or holds another one.
var errNotEnrolled = errors.New("node is not enrolled (removed or re-enrolled)")
