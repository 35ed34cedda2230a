package sched

import (
	"fmt"
	"slices"
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

// Count is how many instances of vt fit in c. Written out, not looped
// over the three resources: Place counts every node of every cluster for
// each launch.
func Count(c nodeapi.Capacity, vt nodeapi.VMType) int {
	n, counted := 0, false
	if vt.Cores > 0 {
		n, counted = max(c.Cores/vt.Cores, 0), true
	}
	if vt.MemoryMiB > 0 {
		if k := max(c.MemoryMiB/vt.MemoryMiB, 0); !counted || k < n {
			n = k
		}
		counted = true
	}
	if vt.DiskGiB > 0 {
		if k := max(c.DiskGiB/vt.DiskGiB, 0); !counted || k < n {
			n = k
		}
		counted = true
	}
	if !counted {
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
	return PlaceOn(p, slices.Clone(nodes), vt, n)
}

// PlaceOn is PlaceN booking on nodes themselves, for a caller whose list is
// its own to change (at 10,000 nodes the copy was half a megabyte a
// placement). After a failure nodes holds some of the bookings.
func PlaceOn(p Policy, nodes []Node, vt nodeapi.VMType, n int) ([]string, bool) {
	ids := make([]string, 0, n)
	for k := 0; k < n; k++ {
		i := p.Pick(nodes, vt)
		if i < 0 {
			return nil, false
		}
		nodes[i].Take(vt)
		ids = append(ids, nodes[i].ID)
	}
	return ids, true
}
