package cluster

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"ironbark/controller"
	"ironbark/controller/sched"
	"ironbark/internal/nodeapi"
)

// Zone states, as DescribeAvailabilityZones shows them.
const (
	ZoneAvailable   = "available"
	ZoneUnavailable = "unavailable"
)

// candidateSet is each cluster's live nodes with what is free on them,
// nodes in ID order. Its lists share one buffer that is reused across
// placements (candPool): at 10,000 nodes, building them afresh for every
// launch was half a megabyte, and with PlaceN's copy the largest share of
// the controller's allocations during launches, which set how often the
// garbage collector's marks ran.
type candidateSet struct {
	byCluster map[string][]sched.Node
	buf       []sched.Node
}

var candPool = sync.Pool{New: func() any { return &candidateSet{byCluster: map[string][]sched.Node{}} }}

// release returns the set to the pool: its lists must not be used after.
func (cs *candidateSet) release() { candPool.Put(cs) }

// candidates returns the set; the caller releases it.
func (s *Service) candidates(ctx context.Context) (*candidateSet, error) {
	snap, err := s.snapshotCached(ctx)
	if err != nil {
		return nil, err
	}
	usage, err := s.cfg.Ledger.Usage(ctx)
	if err != nil {
		return nil, fmt.Errorf("instance usage: %w", err)
	}
	cutoff := s.cfg.Now().Add(-s.cfg.HeartbeatTimeout)
	base := s.candidateBase(snap, usage, cutoff)
	cs := candPool.Get().(*candidateSet)
	clear(cs.byCluster)
	// The base's lists with this controller's launches since its usage
	// read booked on them: a copy and a few hundred nodes, where
	// building the lists looked every node's usage up in three maps
	// (about 2 ms a placement at 10,000 nodes).
	cs.buf = append(cs.buf[:0], base.nodes...)
	usage.EachRecent(func(node string, nu nodeapi.NodeUsage) {
		i, ok := base.pos[node]
		if !ok {
			return // down, drained or not in the snapshot
		}
		n := &cs.buf[i]
		n.Free.Cores -= nu.Cores
		n.Free.MemoryMiB -= nu.MemoryMiB
		n.Free.DiskGiB -= nu.DiskGiB
		n.Instances += nu.Instances
	})
	for _, sp := range base.spans {
		// Capped, so no list can grow into the next one.
		cs.byCluster[sp.cluster] = cs.buf[sp.from:sp.to:sp.to]
	}
	return cs, nil
}

// candidateBase is the live nodes of one node snapshot with what is
// free on them after one whole read of usage: the candidates but for
// the launches since that read. It holds until either is replaced or a
// node in it falls silent (its last heartbeat passes the cutoff).
type candidateBase struct {
	snap, usage uint64 // nodeSnapshot.id, NodeUsages.BaseID
	// The base holds for cutoffs from the one it was built at (a node
	// it left out as silent stays out) to until, the earliest last
	// heartbeat among its nodes.
	cutoff, until time.Time
	nodes         []sched.Node
	pos           map[string]int // node ID -> index in nodes
	spans         []clusterSpan
}

type clusterSpan struct {
	cluster  string
	from, to int
}

// candidateBase returns the base for snap, usage and cutoff, built now
// when the one kept is not (the base is read-only once kept: placements
// and zone listings copy it concurrently).
func (s *Service) candidateBase(snap nodeSnapshot, usage controller.NodeUsages, cutoff time.Time) *candidateBase {
	s.mu.Lock()
	b := s.candBase
	s.mu.Unlock()
	if b != nil && b.snap == snap.id && b.usage == usage.BaseID() && usage.BaseID() != 0 &&
		!cutoff.Before(b.cutoff) && !cutoff.After(b.until) {
		return b
	}
	b = &candidateBase{snap: snap.id, usage: usage.BaseID(), cutoff: cutoff, nodes: make([]sched.Node, 0, len(snap.nodes))}
	b.pos = make(map[string]int, len(snap.nodes))
	for _, g := range snap.groups {
		from := len(b.nodes)
		for _, i := range g.nodes {
			n := &snap.nodes[i]
			if !n.heardSince(cutoff) || n.Drained {
				continue
			}
			if b.until.IsZero() || n.LastHeartbeat.Before(b.until) {
				b.until = n.LastHeartbeat
			}
			u := usage.BaseOf(n.ID)
			b.pos[n.ID] = len(b.nodes)
			b.nodes = append(b.nodes, sched.Node{
				ID: n.ID,
				Free: nodeapi.Capacity{
					Cores:     n.Capacity.Cores - u.Cores,
					MemoryMiB: n.Capacity.MemoryMiB - u.MemoryMiB,
					DiskGiB:   n.Capacity.DiskGiB - u.DiskGiB,
				},
				Instances: u.Instances,
			})
		}
		if len(b.nodes) > from {
			b.spans = append(b.spans, clusterSpan{g.cluster, from, len(b.nodes)})
		}
	}
	s.mu.Lock()
	s.candBase = b
	s.mu.Unlock()
	return b
}

// Zones lists every cluster with free and max counts per VM type.
func (s *Service) Zones(ctx context.Context) ([]controller.Zone, error) {
	clusters, err := s.Clusters(ctx)
	if err != nil {
		return nil, err
	}
	cs, err := s.candidates(ctx)
	if err != nil {
		return nil, err
	}
	defer cs.release()
	cands := cs.byCluster
	vts, err := s.cfg.VMTypes(ctx)
	if err != nil {
		return nil, fmt.Errorf("vm types: %w", err)
	}
	nodes, err := s.nodesCached(ctx)
	if err != nil {
		return nil, err
	}
	caps := map[string]nodeapi.Capacity{}
	for _, n := range nodes {
		caps[n.ID] = n.Capacity
	}
	zones := make([]controller.Zone, 0, len(clusters))
	for _, c := range clusters {
		z := controller.Zone{Name: c.Name, State: ZoneUnavailable, Free: map[string]int{}, Max: map[string]int{}}
		if len(cands[c.Name]) > 0 {
			z.State = ZoneAvailable
		}
		for _, vt := range vts {
			z.Free[vt.Name], z.Max[vt.Name] = 0, 0
			for _, n := range cands[c.Name] {
				z.Free[vt.Name] += sched.Count(n.Free, vt)
				z.Max[vt.Name] += sched.Count(caps[n.ID], vt)
			}
		}
		zones = append(zones, z)
	}
	return zones, nil
}

// Place picks nodes for n instances of vt. With zone "" it tries the zones
// with the most free room for vt first.
func (s *Service) Place(ctx context.Context, zone string, vt nodeapi.VMType, n int) (string, []string, error) {
	if n <= 0 {
		return "", nil, fmt.Errorf("place %d instances: count must be positive", n)
	}
	clusters, err := s.clusterList(ctx)
	if err != nil {
		return "", nil, err
	}
	if zone != "" {
		c, found := clusterNamed(clusters, zone)
		if !found {
			// Added since the list was read, perhaps (the CLI, another
			// controller).
			if clusters, err = s.Clusters(ctx); err != nil {
				return "", nil, err
			}
			if c, found = clusterNamed(clusters, zone); !found {
				return "", nil, fmt.Errorf("%w: %s", controller.ErrNoSuchZone, zone)
			}
		}
		clusters = []Cluster{c}
	} else {
		clusters = slices.Clone(clusters) // sorted below; the list is shared
	}
	cs, err := s.candidates(ctx)
	if err != nil {
		return "", nil, err
	}
	defer cs.release()
	cands := cs.byCluster
	if len(clusters) > 1 {
		free := make(map[string]int, len(clusters))
		for _, c := range clusters {
			n := 0 // summed here, not in the map: a map write per node was most of a placement
			for _, nd := range cands[c.Name] {
				n += sched.Count(nd.Free, vt)
			}
			free[c.Name] = n
		}
		sort.SliceStable(clusters, func(i, j int) bool { return free[clusters[i].Name] > free[clusters[j].Name] })
	}
	for _, c := range clusters {
		p, err := s.policy(c)
		if err != nil {
			return "", nil, err
		}
		// The lists are this call's own: book on them, no copy.
		if ids, ok := sched.PlaceOn(p, cands[c.Name], vt, n); ok {
			return c.Name, ids, nil
		}
	}
	return "", nil, controller.ErrInsufficientCapacity
}

func clusterNamed(cs []Cluster, name string) (Cluster, bool) {
	for _, c := range cs {
		if c.Name == name {
			return c, true
		}
	}
	return Cluster{}, false
}

// nodesCached is the node table as read at most snapshotTTL ago. A
// snapshot past that is still answered, up to snapshotMaxAge, while one
// refresh reads the table in the background: at 10,000 nodes the read
// took 300 ms on PostgreSQL, and the launch that found the snapshot
// expired waited for it under the placement lock, with every launch
// queued behind it. With no snapshot (at start, after invalidate) the
// caller reads.
func (s *Service) nodesCached(ctx context.Context) ([]Node, error) {
	snap, err := s.snapshotCached(ctx)
	return snap.nodes, err
}

// WarmPlacement implements controller.PlacementWarmer: the node table
// is read now, before the launch queues, when the next Place would have
// to read it (no snapshot, or one past snapshotMaxAge); a snapshot past
// snapshotTTL is refreshed in the background as Place does.
func (s *Service) WarmPlacement(ctx context.Context) error {
	_, err := s.snapshotCached(ctx)
	return err
}

// snapshotCached is nodesCached's snapshot, with its groups.
func (s *Service) snapshotCached(ctx context.Context) (nodeSnapshot, error) {
	s.mu.Lock()
	snap, gen := s.snap, s.snapGen
	age := time.Since(snap.at)
	usable := snap.nodes != nil && age >= 0 && age < snapshotMaxAge
	if usable && age >= snapshotTTL && !s.snapReading {
		s.snapReading = true
		go s.refreshSnapshot(gen)
	}
	s.mu.Unlock()
	if usable {
		return snap, nil
	}
	return s.readSnapshot(ctx, gen)
}

// readSnapshot reads the node table and keeps it as the snapshot unless
// an invalidate came after gen (the read may predate its change).
func (s *Service) readSnapshot(ctx context.Context, gen uint64) (nodeSnapshot, error) {
	nodes, err := s.Nodes(ctx, "")
	if err != nil {
		return nodeSnapshot{}, err
	}
	if nodes == nil {
		nodes = []Node{} // a snapshot of no nodes is still a snapshot
	}
	snap := snapshotOf(nodes, time.Now())
	s.mu.Lock()
	if s.snapGen == gen {
		s.snap = snap
	}
	s.mu.Unlock()
	return snap, nil
}

func (s *Service) refreshSnapshot(gen uint64) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := s.readSnapshot(ctx, gen); err != nil {
		s.log.Warn("node table for placement", "err", err)
	}
	s.mu.Lock()
	s.snapReading = false
	s.mu.Unlock()
}

// invalidate drops the node snapshot after a change placement must see at
// once (a node enrolled, removed or marked down here).
func (s *Service) invalidate() {
	s.mu.Lock()
	s.snap = nodeSnapshot{}
	s.snapGen++
	s.mu.Unlock()
}

// NodeStatus implements controller.NodeHealth: every enrolled node and
// whether it is up (state up and a heartbeat within HeartbeatTimeout).
func (s *Service) NodeStatus(ctx context.Context) (map[string]controller.NodeStatus, error) {
	nodes, err := s.nodesCached(ctx)
	if err != nil {
		return nil, err
	}
	now := s.cfg.Now()
	out := make(map[string]controller.NodeStatus, len(nodes))
	for _, n := range nodes {
		out[n.ID] = controller.NodeStatus{Up: n.Live(now, s.cfg.HeartbeatTimeout), LastHeartbeat: n.LastHeartbeat}
	}
	return out, nil
}

var _ controller.PlacementWarmer = (*Service)(nil)
