package sched

import (
	"fmt"
	"reflect"
	"testing"

	"ironbark/internal/nodeapi"
)

var small = nodeapi.VMType{Name: "m1.small", Cores: 1, MemoryMiB: 256, DiskGiB: 5}

func node(id string, cores, instances int) Node {
	return Node{ID: id, Free: nodeapi.Capacity{Cores: cores, MemoryMiB: cores * 256, DiskGiB: cores * 5}, Instances: instances}
}

func TestPolicies(t *testing.T) {
	tests := []struct {
		policy string
		nodes  []Node
		n      int
		want   []string
	}{
		{Greedy, []Node{node("a", 2, 0), node("b", 4, 0)}, 3, []string{"a", "a", "b"}},
		{Greedy, []Node{node("a", 0, 3), node("b", 1, 0)}, 1, []string{"b"}},
		{RoundRobin, []Node{node("a", 2, 0), node("b", 2, 0), node("c", 2, 0)}, 4, []string{"a", "b", "c", "a"}},
		{RoundRobin, []Node{node("a", 2, 0), node("b", 0, 2), node("c", 2, 0)}, 3, []string{"a", "c", "a"}},
		// POWERSAVE packs onto the busiest node that fits, idle ones last.
		{PowerSave, []Node{node("a", 4, 0), node("b", 2, 1), node("c", 2, 3)}, 4, []string{"c", "c", "b", "b"}},
		{PowerSave, []Node{node("a", 4, 0), node("b", 0, 5)}, 2, []string{"a", "a"}},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%s/%v", tc.policy, tc.want), func(t *testing.T) {
			p, err := New(tc.policy)
			if err != nil {
				t.Fatal(err)
			}
			got, ok := PlaceN(p, tc.nodes, small, tc.n)
			if !ok || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("placed %v (ok %v), want %v", got, ok, tc.want)
			}
		})
	}
}

func TestDoesNotFit(t *testing.T) {
	for _, name := range Policies() {
		p, _ := New(name)
		nodes := []Node{node("a", 1, 0), node("b", 1, 0)}
		if ids, ok := PlaceN(p, nodes, small, 3); ok {
			t.Fatalf("%s placed 3 on room for 2: %v", name, ids)
		}
		if nodes[0].Free.Cores != 1 {
			t.Fatalf("%s: PlaceN changed its input", name)
		}
		if _, ok := PlaceN(p, nil, small, 1); ok {
			t.Fatalf("%s placed on no nodes", name)
		}
		// PlaceOn books on the list it is given.
		if ids, ok := PlaceOn(p, nodes, small, 2); !ok || len(ids) != 2 {
			t.Fatalf("%s: PlaceOn placed %v, %v", name, ids, ok)
		}
		if nodes[0].Free.Cores != 0 || nodes[1].Free.Cores != 0 || nodes[0].Instances+nodes[1].Instances != 2 {
			t.Fatalf("%s: PlaceOn left %+v", name, nodes)
		}
	}
}

// ROUNDROBIN keeps rotating across calls, and across nodes joining.
func TestRoundRobinAcrossCalls(t *testing.T) {
	p, _ := New("roundrobin")
	nodes := []Node{node("a", 8, 0), node("b", 8, 0)}
	var got []string
	for i := 0; i < 3; i++ {
		ids, _ := PlaceN(p, nodes, small, 1)
		got = append(got, ids...)
	}
	nodes = append(nodes, node("c", 8, 0))
	ids, _ := PlaceN(p, nodes, small, 2)
	got = append(got, ids...)
	if want := []string{"a", "b", "a", "b", "c"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("rotation %v, want %v", got, want)
	}
}

func TestCount(t *testing.T) {
	c := nodeapi.Capacity{Cores: 8, MemoryMiB: 1024, DiskGiB: 100}
	if n := Count(c, small); n != 4 {
		t.Fatalf("count %d, want 4 (memory bound)", n)
	}
	if n := Count(nodeapi.Capacity{Cores: -1}, small); n != 0 {
		t.Fatalf("overcommitted node counts %d", n)
	}
	if n := Count(c, nodeapi.VMType{}); n != 0 {
		t.Fatalf("empty VM type counts %d", n)
	}
	if _, err := New("BESTFIT"); err == nil {
		t.Fatal("unknown policy accepted")
	}
}

// BenchmarkPlace measures placements per second over 1,000 simulated nodes
// (one instance per placement, booked on the nodes as it goes).
func BenchmarkPlace(b *testing.B) {
	for _, name := range Policies() {
		b.Run(name, func(b *testing.B) {
			p, _ := New(name)
			nodes := make([]Node, 1000)
			for i := range nodes {
				nodes[i] = Node{ID: fmt.Sprintf("node-%04d", i), Free: nodeapi.Capacity{Cores: 1 << 30, MemoryMiB: 1 << 40, DiskGiB: 1 << 40}, Instances: i % 3}
			}
			// Most nodes full, so the policies have to look.
			for i := range nodes[:900] {
				nodes[i].Free = nodeapi.Capacity{}
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				k := p.Pick(nodes, small)
				if k < 0 {
					b.Fatal("no node")
				}
				nodes[k].Take(small)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "placements/s")
		})
	}
}
