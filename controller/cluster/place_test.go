package cluster

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	sdk "github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go"

	"ironbark/controller"
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

// The candidates' base (the live nodes of one snapshot less one usage
// read) is built once and copied by each placement: a placement's
// bookings stay out of it, a node falling silent leaves it though
// neither the snapshot nor the usage changed, and a new usage read or
// snapshot rebuilds it.
func TestCandidateBaseKept(t *testing.T) {
	ctx := context.Background()
	l := newMemLedger()
	s := newService(t, storetest.SQLite(t, nil), l)
	clock := time.Now()
	s.cfg.Now = func() time.Time { return clock }
	room := nodeapi.Capacity{Cores: 4, MemoryMiB: 4096, DiskGiB: 40}
	nodes := []Node{
		{ID: "n1", Cluster: "a", State: NodeUp, LastHeartbeat: clock, Capacity: room},
		// n2 was heard longest ago: it is the first to fall silent.
		{ID: "n2", Cluster: "a", State: NodeUp, LastHeartbeat: clock.Add(-s.cfg.HeartbeatTimeout / 2), Capacity: room},
		{ID: "n3", Cluster: "b", State: NodeUp, LastHeartbeat: clock, Capacity: room},
	}
	s.mu.Lock()
	s.snap = snapshotOf(nodes, time.Now())
	s.snapReading = true // no background read replaces the snapshot set here
	s.mu.Unlock()
	l.usage["n1"] = nodeapi.NodeUsage{Cores: 1, MemoryMiB: 1024, DiskGiB: 10, Instances: 1}
	l.freeze()
	free := func(id string, cores, mem, disk, inst int) sched.Node {
		return sched.Node{ID: id, Free: nodeapi.Capacity{Cores: cores, MemoryMiB: mem, DiskGiB: disk}, Instances: inst}
	}
	get := func() map[string][]sched.Node {
		t.Helper()
		cs, err := s.candidates(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer cs.release()
		out := map[string][]sched.Node{}
		for c, ns := range cs.byCluster {
			out[c] = slices.Clone(ns)
		}
		// Book on the lists as Place does: the next call must not see it.
		for _, ns := range cs.byCluster {
			ns[0].Take(nodeapi.VMType{Cores: 1, MemoryMiB: 1, DiskGiB: 1})
		}
		return out
	}
	base := func() *candidateBase {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.candBase
	}
	want := map[string][]sched.Node{
		"a": {free("n1", 3, 3072, 30, 1), free("n2", 4, 4096, 40, 0)},
		"b": {free("n3", 4, 4096, 40, 0)},
	}
	if got := get(); !reflect.DeepEqual(got, want) {
		t.Fatalf("candidates %+v, want %+v", got, want)
	}
	first := base()
	if got := get(); !reflect.DeepEqual(got, want) {
		t.Fatalf("after a booking: %+v, want %+v", got, want)
	}
	if base() != first {
		t.Fatal("the base was rebuilt with the snapshot and usage unchanged")
	}

	// n2 falls silent: gone from the candidates, though nothing was read.
	clock = clock.Add(s.cfg.HeartbeatTimeout/2 + time.Second)
	want["a"] = want["a"][:1]
	if got := get(); !reflect.DeepEqual(got, want) {
		t.Fatalf("after n2 fell silent: %+v, want %+v", got, want)
	}

	// A new usage read: the base follows it.
	l.usage["n3"] = nodeapi.NodeUsage{Cores: 2, MemoryMiB: 2048, DiskGiB: 20, Instances: 2}
	l.freeze()
	want["b"] = []sched.Node{free("n3", 2, 2048, 20, 2)}
	if got := get(); !reflect.DeepEqual(got, want) {
		t.Fatalf("after a usage read: %+v, want %+v", got, want)
	}

	// A new snapshot: n1 drained.
	nodes[0].Drained = true
	s.mu.Lock()
	s.snap = snapshotOf(nodes, time.Now())
	s.mu.Unlock()
	delete(want, "a")
	if got := get(); !reflect.DeepEqual(got, want) {
		t.Fatalf("after a new snapshot: %+v, want %+v", got, want)
	}
}

// Placement counts this controller's launches since its last usage read
// (the base of the candidates is built from the read): a node with room
// for two takes two launches, one at a time, and refuses the third.
func TestPlacementCountsOwnLaunches(t *testing.T) {
	ctx := context.Background()
	db := storetest.SQLite(t, controller.Migrations())
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	admin, image := adminAndImage(t, db, "own")
	cloud, err := controller.New(controller.Config{Region: "ironbark", Endpoint: "http://test/"}, db, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	s := newService(t, db, cloud)
	cloud.SetPlacer(s.Placer())
	if err := s.AddCluster(ctx, "c1", "GREEDY"); err != nil {
		t.Fatal(err)
	}
	node := addNode(t, s, "c1", nodeapi.Capacity{Cores: 2, MemoryMiB: 4096, DiskGiB: 100})
	client := serveEC2(t, db, cloud, admin)
	run := func() error {
		_, err := client.RunInstances(ctx, &sdk.RunInstancesInput{ImageId: aws.String(image),
			InstanceType: types.InstanceType("m1.small"), MinCount: aws.Int32(1), MaxCount: aws.Int32(1)})
		return err
	}
	for i := 0; i < 2; i++ {
		if err := run(); err != nil {
			t.Fatalf("launch %d: %v", i+1, err)
		}
	}
	var ae smithy.APIError
	if err := run(); !errors.As(err, &ae) || ae.ErrorCode() != "InsufficientInstanceCapacity" {
		t.Fatalf("third launch on a node with room for two: %v, want InsufficientInstanceCapacity", err)
	}
	var n int
	if err := db.QueryRow(ctx, `SELECT COUNT(*) FROM instances WHERE node_id = ?`, node).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Fatalf("%d instances on the node, want 2", n)
	}
}
