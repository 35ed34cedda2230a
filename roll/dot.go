package roll

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
)

// DOT writes the graph an appliance's walk sees, in Graphviz DOT, like
// Rocks' `rocks list host graph`. Unpruned, it holds every node reachable
// from the appliance's root whatever the conditions, with each guarded
// edge dashed and labelled with its guard; pruned, only the edges whose
// guards hold for attrs (the host's attributes; see Attrs). Order edges
// between the nodes shown are drawn dotted. Each node is labelled with
// the roll it comes from.
func (g *Graph) DOT(w io.Writer, appliance string, attrs map[string]string, pruned bool) error {
	a, ok := g.appliances[appliance]
	if !ok {
		return fmt.Errorf("appliance %s: %w", appliance, ErrNoAppliance)
	}
	attrs = g.Attrs(appliance, attrs)
	keep := func(e Edge) bool { return !pruned || e.Guard.Match(attrs) }
	adj := map[string][]Edge{}
	for _, e := range g.edges {
		adj[e.From] = append(adj[e.From], e)
	}
	var nodes []string
	var edges []Edge
	seen := map[string]bool{}
	var visit func(n string)
	visit = func(n string) {
		seen[n] = true
		nodes = append(nodes, n)
		for _, e := range adj[n] {
			if !keep(e) {
				continue
			}
			edges = append(edges, e)
			if !seen[e.To] {
				visit(e.To)
			}
		}
	}
	visit(a.Node)
	bw := bufio.NewWriter(w)
	q := strconv.Quote
	kind := "unpruned"
	if pruned {
		kind = "pruned"
	}
	fmt.Fprintf(bw, "digraph %s {\n", q(appliance))
	fmt.Fprintf(bw, "\tlabel=%s;\n\tnode [shape=box];\n", q("appliance "+appliance+" ("+kind+")"))
	for _, n := range nodes {
		m := g.nodes[n]
		label := n + "\n" + m.base.Roll
		for _, x := range m.extends {
			label += "+" + x.Roll
		}
		style := ""
		if n == a.Node {
			style = ", style=bold"
		}
		fmt.Fprintf(bw, "\t%s [label=%s%s];\n", q(n), q(label), style)
	}
	for _, e := range edges {
		attr := ""
		if gs := e.Guard.String(); gs != "" {
			attr = fmt.Sprintf(" [label=%s, style=dashed]", q(gs))
		}
		fmt.Fprintf(bw, "\t%s -> %s%s;\n", q(e.From), q(e.To), attr)
	}
	for _, o := range g.orders {
		if (seen[o.Head] || o.Head == Head || o.Head == Tail) && (seen[o.Tail] || o.Tail == Head || o.Tail == Tail) &&
			(seen[o.Head] || seen[o.Tail]) && (!pruned || o.Guard.Match(attrs)) {
			fmt.Fprintf(bw, "\t%s -> %s [style=dotted, color=blue, constraint=false];\n", q(o.Head), q(o.Tail))
		}
	}
	fmt.Fprintln(bw, "}")
	return bw.Flush()
}
