package roll

import (
	"strings"
	"testing"
)

// Order with HEAD and TAIL: explicit orders first, unordered nodes at
// TAIL in walk order, x->TAIL after those, TAIL->x last, x->HEAD first.
func TestOrder(t *testing.T) {
	cases := []struct {
		name   string
		orders string
		attrs  map[string]string
		want   string
	}{
		{"none: walk order", ``, nil, "root a b c d"},
		{"one explicit order goes first", `<order head="d" tail="b"/>`, nil, "d b root a c"},
		{"HEAD pulls a node forward", `<order head="HEAD" tail="c"/>`, nil, "c root a b d"},
		{"before HEAD is first of all", `<order head="HEAD" tail="c"/><order head="d" tail="HEAD"/>`, nil, "d c root a b"},
		{"to TAIL goes after the unordered", `<order head="a" tail="TAIL"/>`, nil, "root b c d a"},
		{"after TAIL is last", `<order head="TAIL" tail="root"/><order head="a" tail="TAIL"/>`, nil, "b c d a root"},
		{"chain", `<order head="c"><tail>b</tail></order><order head="b" tail="a"/>`, nil, "c b a root d"},
		{"order with a false condition is ignored", `<order head="d" tail="b" cond="late"/>`, nil, "root a b c d"},
		{"order with a true condition holds", `<order head="d" tail="b" cond="late"/>`, map[string]string{"late": "yes"}, "d b root a c"},
		{"order to a node not walked is ignored", `<order head="c" tail="e"/><order head="e" tail="a"/>`, nil, "root a b c d"},
		{"order to a node no roll has is ignored", `<order head="ghost" tail="a"/>`, nil, "root a b c d"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, err := Open(writeRoll(t, map[string]string{
				"roll.xml":    `<roll name="r" version="1" arch="any" os="debian"><appliance name="x" node="root"/></roll>`,
				"nodes/a.xml": emptyNode, "nodes/b.xml": emptyNode, "nodes/c.xml": emptyNode, "nodes/d.xml": emptyNode, "nodes/e.xml": emptyNode,
				"nodes/root.xml": emptyNode,
				"graphs/default/g.xml": `<graph><edge from="root"><to>a</to><to>b</to></edge><edge from="b" to="c"/><edge from="root" to="d"/>` +
					`<edge from="e" to="a" cond="never"/>` + c.orders + `</graph>`,
			}))
			if err != nil {
				t.Fatal(err)
			}
			g, err := Merge(r)
			if err != nil {
				t.Fatal(err)
			}
			p, err := g.Profile("x", c.attrs)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, n := range p.Nodes {
				got = append(got, n.Name)
			}
			if s := strings.Join(got, " "); s != c.want {
				t.Errorf("order %s, want %s", s, c.want)
			}
		})
	}
}

// A <to> child's guard ANDs with its edge's; identical node files in two
// rolls are one node, not a conflict.
func TestEdgeGuardsAndIdenticalNodes(t *testing.T) {
	r1, err := Open(writeRoll(t, map[string]string{
		"roll.xml":    `<roll name="r" version="1" arch="any" os="debian"><appliance name="x" node="root"/></roll>`,
		"nodes/a.xml": emptyNode, "nodes/b.xml": emptyNode, "nodes/root.xml": emptyNode,
		"graphs/default/g.xml": `<graph><edge from="root" cond="one"><to cond="two">a</to><to os="hurd">b</to></edge></graph>`,
	}))
	if err != nil {
		t.Fatal(err)
	}
	r2, err := Open(writeRoll(t, map[string]string{
		"roll.xml":    `<roll name="s" version="1" arch="any" os="debian"/>`,
		"nodes/a.xml": emptyNode,
	}))
	if err != nil {
		t.Fatal(err)
	}
	g, err := Merge(r1, r2)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		attrs map[string]string
		want  string
	}{
		{nil, "root"},
		{map[string]string{"one": "y"}, "root"},
		{map[string]string{"two": "y"}, "root"},
		{map[string]string{"one": "y", "two": "y"}, "root a"},
		{map[string]string{"one": "y", "os": "hurd"}, "root b"},
	} {
		p, err := g.Profile("x", c.attrs)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, n := range p.Nodes {
			got = append(got, n.Name)
		}
		if s := strings.Join(got, " "); s != c.want {
			t.Errorf("%v: walked %s, want %s", c.attrs, s, c.want)
		}
	}
}
