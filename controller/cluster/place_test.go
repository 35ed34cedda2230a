package cluster

import (
	"context"
	"reflect"
	"testing"
	"time"

	"ironbark/controller/sched"
	"ironbark/internal/nodeapi"
	"ironbark/internal/store/storetest"
)

// candidates sorts the snapshot's live nodes into their clusters, in ID
// order, with their usage taken off; its lists come from a reused buffer,
// so a second call over fewer nodes must show none of the first's.
func TestCandidatesPerCluster(t *testing.T) {
	ctx := context.Background()
	l := newMemLedger()
	s := newService(t, storetest.SQLite(t, nil), l)
	now := s.cfg.Now()
	stale := now.Add(-2 * s.cfg.HeartbeatTimeout)
	room := nodeapi.Capacity{Cores: 8, MemoryMiB: 8192, DiskGiB: 100}
	node := func(id, cluster string, state string, heard time.Time, drained bool) Node {
		return Node{ID: id, Cluster: cluster, State: state, LastHeartbeat: heard, Drained: drained, Capacity: room}
	}
	// IDs interleave the clusters, as enrollment order makes them.
	nodes := []Node{
		node("n1", "a", NodeUp, now, false),
		node("n2", "b", NodeUp, now, false),
		node("n3", "a", NodeDown, now, false),
		node("n4", "b", NodeUp, now, true),
		node("n5", "a", NodeUp, stale, false),
		node("n6", "b", NodeUp, now, false),
		node("n7", "c", NodeDown, now, false),
		node("n8", "a", NodeUp, now, false),
	}
	l.usage["n1"] = nodeapi.NodeUsage{Cores: 3, MemoryMiB: 1024, DiskGiB: 10, Instances: 2}
	set := func(nodes []Node) {
		s.mu.Lock()
		s.snap = snapshotOf(nodes, time.Now())
		s.mu.Unlock()
	}
	set(nodes)
	free := func(id string, cores, mem, disk, inst int) sched.Node {
		return sched.Node{ID: id, Free: nodeapi.Capacity{Cores: cores, MemoryMiB: mem, DiskGiB: disk}, Instances: inst}
	}
	cs, err := s.candidates(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]sched.Node{
		"a": {free("n1", 5, 7168, 90, 2), free("n8", 8, 8192, 100, 0)},
		"b": {free("n2", 8, 8192, 100, 0), free("n6", 8, 8192, 100, 0)},
	}
	if !reflect.DeepEqual(cs.byCluster, want) {
		t.Fatalf("candidates %+v, want %+v", cs.byCluster, want)
	}
	// Booking on one list leaves the next one alone.
	greedy, err := sched.New(sched.Greedy)
	if err != nil {
		t.Fatal(err)
	}
	if ids, ok := sched.PlaceOn(greedy, cs.byCluster["a"], nodeapi.VMType{Cores: 1, MemoryMiB: 1, DiskGiB: 1}, 9); !ok || len(ids) != 9 {
		t.Fatalf("placed %v, %v", ids, ok)
	}
	if !reflect.DeepEqual(cs.byCluster["b"], want["b"]) {
		t.Fatalf("booking on a changed b: %+v", cs.byCluster["b"])
	}
	cs.release()

	set([]Node{node("n2", "b", NodeUp, now, false)})
	cs, err = s.candidates(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.release()
	want = map[string][]sched.Node{"b": {free("n2", 8, 8192, 100, 0)}}
	if !reflect.DeepEqual(cs.byCluster, want) {
		t.Fatalf("after fewer nodes: %+v, want %+v", cs.byCluster, want)
	}
}

// WarmPlacement reads the node table when the next Place would have to
// (no snapshot), so that read is not made under the placement lock.
func TestWarmPlacementReadsNodeTable(t *testing.T) {
	ctx := context.Background()
	s := newService(t, storetest.SQLite(t, nil), newMemLedger())
	s.invalidate()
	if err := s.WarmPlacement(ctx); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.snap.nodes == nil || time.Since(s.snap.at) > time.Minute {
		t.Fatalf("no fresh snapshot after WarmPlacement: %+v", s.snap)
	}
}
