package roll

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"path"
	"runtime"
	"slices"
	"sort"
	"strings"
)

// Graph is the merged configuration graph of a set of enabled rolls.
type Graph struct {
	rolls      map[string]*Roll
	names      []string // roll names, sorted
	nodes      map[string]*mergedNode
	edges      []Edge
	orders     []Order
	appliances map[string]Appliance
	globals    map[string]string
	globalFrom map[string]string // attribute -> roll that set it
}

type mergedNode struct {
	base    *Node   // nodes/<name>.xml, or the replace- file when replaced
	extends []*Node // extend-<name>.xml from each roll, in roll order
}

// ErrConflict is returned (wrapped) when two rolls define one node,
// appliance or attribute differently.
var ErrConflict = errors.New("conflict")

// ErrCycle is returned (wrapped) when the graph or the order graph has a
// cycle.
var ErrCycle = errors.New("cycle")

// Merge merges rolls into one graph. It refuses two rolls of one name, a
// node or appliance defined differently by two rolls, an extend- of a node
// no roll defines, an edge to or from a node no roll defines, and cycles
// in the graph or in the order graph: each with the roll and file:line.
func Merge(rolls ...*Roll) (*Graph, error) {
	g := &Graph{rolls: map[string]*Roll{}, nodes: map[string]*mergedNode{},
		appliances: map[string]Appliance{}, globals: map[string]string{}, globalFrom: map[string]string{}}
	for _, r := range rolls {
		if o, dup := g.rolls[r.Name]; dup {
			return nil, fmt.Errorf("%w: roll %s given twice (%s and %s)", ErrConflict, r.Name, o.Source, r.Source)
		}
		g.rolls[r.Name] = r
		g.names = append(g.names, r.Name)
	}
	sort.Strings(g.names)
	at := func(roll, pos string) string { return "roll " + roll + ": " + pos }
	for _, rn := range g.names {
		r := g.rolls[rn]
		for _, name := range sortedKeys(r.Nodes) {
			n := r.Nodes[name]
			if m, ok := g.nodes[name]; ok {
				if string(m.base.raw) != string(n.raw) {
					return nil, fmt.Errorf("%s: %w: node %s is also defined, differently, by roll %s (%s)",
						at(rn, n.File), ErrConflict, name, m.base.Roll, m.base.File)
				}
				continue
			}
			g.nodes[name] = &mergedNode{base: n}
		}
	}
	replacedBy := map[string]*Node{}
	for _, rn := range g.names {
		r := g.rolls[rn]
		for _, name := range sortedKeys(r.Replaces) {
			n := r.Replaces[name]
			if o, ok := replacedBy[name]; ok {
				if string(o.raw) != string(n.raw) {
					return nil, fmt.Errorf("%s: %w: node %s is also replaced, differently, by roll %s (%s)",
						at(rn, n.File), ErrConflict, name, o.Roll, o.File)
				}
				continue
			}
			replacedBy[name] = n
			if m, ok := g.nodes[name]; ok {
				m.base = n
			} else {
				g.nodes[name] = &mergedNode{base: n}
			}
		}
	}
	for _, rn := range g.names {
		r := g.rolls[rn]
		for _, name := range sortedKeys(r.Extends) {
			n := r.Extends[name]
			m, ok := g.nodes[name]
			if !ok {
				return nil, fmt.Errorf("%s: extends node %s, which no enabled roll defines", at(rn, n.File), name)
			}
			m.extends = append(m.extends, n)
		}
		g.edges = append(g.edges, r.Edges...)
		g.orders = append(g.orders, r.Orders...)
		for _, a := range r.Appliances {
			if o, ok := g.appliances[a.Name]; ok {
				return nil, fmt.Errorf("%s: %w: appliance %s is also defined by roll %s (%s)",
					at(rn, a.Pos), ErrConflict, a.Name, o.Roll, o.Pos)
			}
			g.appliances[a.Name] = a
		}
		for _, k := range sortedKeys(r.Attrs) {
			if o, ok := g.globalFrom[k]; ok && g.globals[k] != r.Attrs[k] {
				return nil, fmt.Errorf("roll %s: %w: attribute %s=%q, roll %s sets %q", rn, ErrConflict, k, r.Attrs[k], o, g.globals[k])
			}
			g.globals[k], g.globalFrom[k] = r.Attrs[k], rn
		}
	}
	// A node with no file is a pure vertex of the graph (Rocks' client,
	// grouping what every installed node gets) if edges leave it; a node
	// that edges only reach and no roll defines is a mistake (a typo, or
	// a roll that is not enabled).
	from := map[string]bool{}
	for _, e := range g.edges {
		from[e.From] = true
	}
	for _, e := range g.edges {
		for _, end := range []string{e.From, e.To} {
			if _, ok := g.nodes[end]; ok {
				continue
			}
			if !from[end] {
				return nil, fmt.Errorf("%s: edge %s -> %s: no enabled roll has node %s (nodes/%s.xml)",
					at(e.Roll, e.Pos), e.From, e.To, end, end)
			}
			g.nodes[end] = &mergedNode{base: &Node{Name: end, Roll: e.Roll, File: e.Pos}}
		}
	}
	for _, rn := range g.names {
		for _, a := range g.rolls[rn].Appliances {
			if _, ok := g.nodes[a.Node]; !ok {
				return nil, fmt.Errorf("%s: appliance %s: no enabled roll has its node %s", at(rn, a.Pos), a.Name, a.Node)
			}
		}
	}
	if err := g.checkCycles(); err != nil {
		return nil, err
	}
	return g, nil
}

func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}

// checkCycles refuses a cycle in the graph or in the order graph, whatever
// the conditions: a cycle that only some hosts see is still a mistake.
func (g *Graph) checkCycles() error {
	type arc struct{ to, pos, roll string }
	find := func(what string, adj map[string][]arc) error {
		state := map[string]int{} // 0 new, 1 on stack, 2 done
		var stack []arc
		var visit func(n string) error
		visit = func(n string) error {
			state[n] = 1
			for _, a := range adj[n] {
				switch state[a.to] {
				case 1:
					i := len(stack)
					for i > 0 && stack[i-1].to != a.to {
						i--
					}
					path := []string{a.to}
					var where []string
					for _, s := range append(stack[i:], a) {
						path = append(path, s.to)
						where = append(where, "roll "+s.roll+": "+s.pos)
					}
					return fmt.Errorf("%w in the %s: %s (%s)", ErrCycle, what, strings.Join(path, " -> "), strings.Join(where, "; "))
				case 0:
					stack = append(stack, a)
					if err := visit(a.to); err != nil {
						return err
					}
					stack = stack[:len(stack)-1]
				}
			}
			state[n] = 2
			return nil
		}
		for _, n := range sortedKeys(adj) {
			if state[n] == 0 {
				if err := visit(n); err != nil {
					return err
				}
			}
		}
		return nil
	}
	adj := map[string][]arc{}
	for _, e := range g.edges {
		adj[e.From] = append(adj[e.From], arc{e.To, e.Pos, e.Roll})
	}
	if err := find("graph", adj); err != nil {
		return err
	}
	adj = map[string][]arc{}
	for _, o := range g.orders {
		adj[o.Head] = append(adj[o.Head], arc{o.Tail, o.Pos, o.Roll})
	}
	return find("order graph", adj)
}

// Rolls returns the merged rolls, by name.
func (g *Graph) Rolls() []*Roll {
	r := make([]*Roll, 0, len(g.names))
	for _, n := range g.names {
		r = append(r, g.rolls[n])
	}
	return r
}

// Appliances returns the appliances the rolls define, by name.
func (g *Graph) Appliances() []Appliance {
	r := make([]Appliance, 0, len(g.appliances))
	for _, n := range sortedKeys(g.appliances) {
		r = append(r, g.appliances[n])
	}
	return r
}

// Appliance returns the appliance called name.
func (g *Graph) Appliance(name string) (Appliance, bool) {
	a, ok := g.appliances[name]
	return a, ok
}

// AddAppliance adds an appliance the site defined (not from a roll): a
// name and the node its walk starts from.
func (g *Graph) AddAppliance(a Appliance) error {
	if err := ValidApplianceName(a.Name); err != nil {
		return fmt.Errorf("appliance: %w", err)
	}
	if a.Node == "" {
		a.Node = a.Name
	}
	if o, ok := g.appliances[a.Name]; ok {
		return fmt.Errorf("appliance %s: %w: roll %s defines it", a.Name, ErrConflict, o.Roll)
	}
	if _, ok := g.nodes[a.Node]; !ok {
		return fmt.Errorf("appliance %s: no enabled roll has its node %s", a.Name, a.Node)
	}
	g.appliances[a.Name] = a
	return nil
}

// HasNode reports whether an enabled roll defines the node.
func (g *Graph) HasNode(name string) bool {
	_, ok := g.nodes[name]
	return ok
}

// Defaults are the intrinsic attributes a profile gets when the caller
// does not give them.
const (
	DefaultOS      = "debian"
	DefaultRelease = "12"
)

// DefaultArch is the frontend's own architecture in the kernel's naming
// (x86_64, aarch64).
func DefaultArch() string { return normArch(runtime.GOARCH) }

// Attrs layers the rolls' defaults under attrs for appliance: roll global
// defaults < the appliance's defaults from its roll < attrs, plus the
// intrinsic appliance, arch, os and release (attrs win when set).
func (g *Graph) Attrs(appliance string, attrs map[string]string) map[string]string {
	r := map[string]string{"arch": DefaultArch(), "os": DefaultOS, "release": DefaultRelease}
	maps.Copy(r, g.globals)
	if a, ok := g.appliances[appliance]; ok {
		maps.Copy(r, a.Attrs)
	}
	maps.Copy(r, attrs)
	r["appliance"] = appliance
	return r
}

// Walk returns the nodes reachable from root, depth first in edge order,
// following only edges whose guards hold for attrs.
func (g *Graph) Walk(root string, attrs map[string]string) ([]string, error) {
	if _, ok := g.nodes[root]; !ok {
		return nil, fmt.Errorf("walk: no enabled roll has node %s", root)
	}
	adj := map[string][]Edge{}
	for _, e := range g.edges {
		adj[e.From] = append(adj[e.From], e)
	}
	seen := map[string]bool{}
	var out []string
	var visit func(n string)
	visit = func(n string) {
		seen[n] = true
		out = append(out, n)
		for _, e := range adj[n] {
			if !seen[e.To] && e.Guard.Match(attrs) {
				visit(e.To)
			}
		}
	}
	visit(root)
	return out, nil
}

// Order sorts the walked nodes with the order graph (orders whose guards
// hold for attrs, between walked nodes and HEAD/TAIL). As in Rocks, a node
// with no path from HEAD gets HEAD -> node and one with no path to TAIL
// gets node -> TAIL, so HEAD and TAIL bracket everything not explicitly
// placed before HEAD or after TAIL. The sort is topological and stable:
// among the nodes free to go next, those with explicit orders go first,
// then unordered nodes, then those ordered only before TAIL, each group in
// walk order. So unordered nodes come out at TAIL.
func (g *Graph) Order(walked []string, attrs map[string]string) ([]string, error) {
	idx := map[string]int{Head: -2, Tail: len(walked) + 1}
	for i, n := range walked {
		idx[n] = i
	}
	adj := map[string][]string{}
	explicit := map[string]bool{} // has an order to or from a real node, or from HEAD / to HEAD / from TAIL
	tailOnly := map[string]bool{} // ordered only before TAIL
	addArc := func(a, b string) {
		if !slices.Contains(adj[a], b) {
			adj[a] = append(adj[a], b)
		}
	}
	for _, o := range g.orders {
		_, hok := idx[o.Head]
		_, tok := idx[o.Tail]
		if !hok || !tok || !o.Guard.Match(attrs) {
			continue
		}
		addArc(o.Head, o.Tail)
		switch {
		case o.Tail == Tail && o.Head != Head:
			tailOnly[o.Head] = true
		default:
			for _, n := range []string{o.Head, o.Tail} {
				if n != Head && n != Tail {
					explicit[n] = true
				}
			}
		}
	}
	reach := func(from, to string) bool {
		seen := map[string]bool{}
		var dfs func(n string) bool
		dfs = func(n string) bool {
			if n == to {
				return true
			}
			seen[n] = true
			for _, m := range adj[n] {
				if !seen[m] && dfs(m) {
					return true
				}
			}
			return false
		}
		return dfs(from)
	}
	for _, n := range walked {
		if !reach(Head, n) && !reach(n, Head) {
			addArc(Head, n)
		}
		if !reach(n, Tail) && !reach(Tail, n) {
			addArc(n, Tail)
		}
	}
	if !reach(Head, Tail) && !reach(Tail, Head) {
		addArc(Head, Tail)
	}
	indeg := map[string]int{}
	all := append([]string{Head, Tail}, walked...)
	for _, n := range all {
		for _, m := range adj[n] {
			indeg[m]++
		}
	}
	class := func(n string) int {
		switch {
		case n == Head || n == Tail:
			return 3
		case explicit[n]:
			return 0
		case tailOnly[n]:
			return 2
		}
		return 1
	}
	var ready, out []string
	for _, n := range all {
		if indeg[n] == 0 {
			ready = append(ready, n)
		}
	}
	for len(ready) > 0 {
		sort.Slice(ready, func(i, j int) bool {
			ci, cj := class(ready[i]), class(ready[j])
			if ci != cj {
				return ci < cj
			}
			return idx[ready[i]] < idx[ready[j]]
		})
		n := ready[0]
		ready = ready[1:]
		if n != Head && n != Tail {
			out = append(out, n)
		}
		for _, m := range adj[n] {
			if indeg[m]--; indeg[m] == 0 {
				ready = append(ready, m)
			}
		}
	}
	if len(out) != len(walked) {
		return nil, fmt.Errorf("%w in the order graph among %s", ErrCycle, strings.Join(walked, ", "))
	}
	return out, nil
}

// Profile walks the graph for appliance with attrs (the host's resolved
// attributes, or none for the appliance alone; see Attrs for the
// defaults layered under them) and returns its ordered profile.
func (g *Graph) Profile(appliance string, attrs map[string]string) (*Profile, error) {
	a, ok := g.appliances[appliance]
	if !ok {
		return nil, fmt.Errorf("appliance %s: %w", appliance, ErrNoAppliance)
	}
	attrs = g.Attrs(appliance, attrs)
	walked, err := g.Walk(a.Node, attrs)
	if err != nil {
		return nil, fmt.Errorf("appliance %s: %w", appliance, err)
	}
	order, err := g.Order(walked, attrs)
	if err != nil {
		return nil, fmt.Errorf("appliance %s: %w", appliance, err)
	}
	p := &Profile{Appliance: appliance, Arch: attrs["arch"], OS: attrs["os"], Release: attrs["release"], Attrs: attrs,
		Nodes: []ProfileNode{}, Packages: []Package{}, Files: []File{}, Scripts: []Script{}}
	havePkg := map[string]bool{}
	for _, name := range order {
		m := g.nodes[name]
		p.Nodes = append(p.Nodes, ProfileNode{Name: name, Origin: Origin{Roll: m.base.Roll, Node: name, Pos: m.base.File}})
		for _, n := range append([]*Node{m.base}, m.extends...) {
			for _, it := range n.Items {
				if !it.Guard.Match(attrs) {
					continue
				}
				o := Origin{Roll: n.Roll, Node: name, Pos: it.Pos}
				fail := func(err error) error {
					var pe *PosError
					if errors.As(err, &pe) {
						return fmt.Errorf("appliance %s: roll %s: %w", appliance, o.Roll, err)
					}
					return fmt.Errorf("appliance %s: roll %s: %s: %w", appliance, o.Roll, o.Pos, err)
				}
				switch it.Kind {
				case ItemPackage:
					for _, pk := range it.Packages {
						if !havePkg[pk] {
							havePkg[pk] = true
							p.Packages = append(p.Packages, Package{Name: pk, Origin: o})
						}
					}
				case ItemFile:
					f, err := g.renderFile(n.Roll, it, attrs)
					if err != nil {
						return nil, fail(err)
					}
					f.Origin = o
					p.Files = append(p.Files, f)
				case ItemPost:
					body, err := it.Text.Render(attrs)
					if err != nil {
						return nil, fail(err)
					}
					p.Scripts = append(p.Scripts, Script{Interpreter: it.Interpreter, Body: body, Origin: o})
				}
			}
		}
	}
	return p, nil
}

// ErrNoAppliance is returned (wrapped) for an appliance no enabled roll
// or site definition has.
var ErrNoAppliance = errors.New("no such appliance")

func (g *Graph) renderFile(roll string, it Item, attrs map[string]string) (File, error) {
	name, err := it.Name.Render(attrs)
	if err != nil {
		return File{}, err
	}
	if !path.IsAbs(name) || path.Clean(name) != name || name == "/" {
		return File{}, fmt.Errorf("<file name=%q>: want a clean absolute path", name)
	}
	mode := fs.FileMode(it.Perms & 0o777)
	if it.Perms&0o4000 != 0 {
		mode |= fs.ModeSetuid
	}
	if it.Perms&0o2000 != 0 {
		mode |= fs.ModeSetgid
	}
	if it.Perms&0o1000 != 0 {
		mode |= fs.ModeSticky
	}
	f := File{Path: name, Mode: mode, Owner: it.Owner, Append: it.Append}
	if it.Src != "" {
		b, ok := g.rolls[roll].Files[it.Src]
		if !ok {
			f.Source = it.Src // bin/...: the builder supplies it
			return f, nil
		}
		f.Content = b
		return f, nil
	}
	body, err := it.Text.Render(attrs)
	if err != nil {
		return File{}, err
	}
	f.Content = []byte(body)
	return f, nil
}
