package sched

import (
	"fmt"
	"sort"
	"strings"
	"sync"

	"ironbark/internal/nodeapi"
)

// Policy names, as `ironbark cluster add --policy` takes them.
const (
	Greedy     = "GREEDY"
	RoundRobin = "ROUNDROBIN"
	PowerSave  = "POWERSAVE"
)

// Policies lists the known policy names.
func Policies() []string { return []string{Greedy, RoundRobin, PowerSave} }

// Node is a placement candidate: what is still free on it and how many
// instances it runs. Nodes are given in a stable order (by ID).
type Node struct {
	ID        string
	Free      nodeapi.Capacity
	Instances int
}

// Fits reports whether vt fits in n's free capacity.
func (n *Node) Fits(vt nodeapi.VMType) bool {
	return n.Free.Cores >= vt.Cores && n.Free.MemoryMiB >= vt.MemoryMiB && n.Free.DiskGiB >= vt.DiskGiB
}

// Take books vt on n.
func (n *Node) Take(vt nodeapi.VMType) {
	n.Free.Cores -= vt.Cores
	n.Free.MemoryMiB -= vt.MemoryMiB
	n.Free.DiskGiB -= vt.DiskGiB
	n.Instances++
}

// Count is how many instances of vt fit in c.
func Count(c nodeapi.Capacity, vt nodeapi.VMType) int {
	n := -1
	for _, p := range [][2]int{{c.Cores, vt.Cores}, {c.MemoryMiB, vt.MemoryMiB}, {c.DiskGiB, vt.DiskGiB}} {
		if p[1] <= 0 {
			continue
		}
		k := p[0] / p[1]
		if k < 0 {
			k = 0
		}
		if n < 0 || k < n {
			n = k
		}
	}
	if n < 0 {
		return 0 // a VM type of nothing: refuse rather than count to infinity
	}
	return n
}

// Policy picks the node for one instance.
type Policy interface {
	Name() string
	// Pick returns the index in nodes of the node that gets one instance of
	// vt, or -1 when none fits.
	Pick(nodes []Node, vt nodeapi.VMType) int
}

// New returns the policy with the given name (case-insensitive).
func New(name string) (Policy, error) {
	switch strings.ToUpper(name) {
	case Greedy, "":
		return greedy{}, nil
	case RoundRobin:
		return &roundRobin{}, nil
	case PowerSave:
		return powerSave{}, nil
	}
	return nil, fmt.Errorf("unknown scheduling policy %q (want one of %s)", name, strings.Join(Policies(), ", "))
}

type greedy struct{}

func (greedy) Name() string { return Greedy }

func (greedy) Pick(nodes []Node, vt nodeapi.VMType) int {
	for i := range nodes {
		if nodes[i].Fits(vt) {
			return i
		}
	}
	return -1
}

// roundRobin remembers the last node it chose and starts after it, so the
// rotation survives nodes joining and leaving.
type roundRobin struct {
	mu   sync.Mutex
	last string
}

func (*roundRobin) Name() string { return RoundRobin }

func (r *roundRobin) Pick(nodes []Node, vt nodeapi.VMType) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	start := 0
	if r.last != "" {
		// First node whose ID sorts after the last one chosen.
		start = sort.Search(len(nodes), func(i int) bool { return nodes[i].ID > r.last })
	}
	for k := 0; k < len(nodes); k++ {
		i := (start + k) % len(nodes)
		if nodes[i].Fits(vt) {
			r.last = nodes[i].ID
			return i
		}
	}
	return -1
}

// powerSave packs: among nodes that fit, the busiest (most instances) wins,
// ties to the first; an idle node is used only when no busy one fits.
type powerSave struct{}

func (powerSave) Name() string { return PowerSave }

func (powerSave) Pick(nodes []Node, vt nodeapi.VMType) int {
	best := -1
	for i := range nodes {
		if !nodes[i].Fits(vt) {
			continue
		}
		if best < 0 || nodes[i].Instances > nodes[best].Instances {
			best = i
		}
	}
	return best
}

// PlaceN places n instances of vt one after another with p, booking each
// on a copy of nodes, and returns the chosen node IDs, or false when they do
// not all fit.
func PlaceN(p Policy, nodes []Node, vt nodeapi.VMType, n int) ([]string, bool) {
	work := make([]Node, len(nodes))
	copy(work, nodes)
	ids := make([]string, 0, n)
	for k := 0; k < n; k++ {
		i := p.Pick(work, vt)
		if i < 0 {
			return nil, false
		}
		work[i].Take(vt)
		ids = append(ids, work[i].ID)
	}
	return ids, true
}
