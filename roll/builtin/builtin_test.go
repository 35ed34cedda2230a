package builtin

import (
	"encoding/xml"
	"io/fs"
	"path"
	"strings"
	"testing"
)

// The vocabulary of ROCKS.md: anything else in a built-in roll is a typo.
var (
	nodeTags  = map[string]bool{"kickstart": true, "description": true, "package": true, "file": true, "pre": true, "post": true, "include": true}
	graphTags = map[string]bool{"graph": true, "description": true, "edge": true, "to": true, "order": true, "tail": true, "head": true}
	rollTags  = map[string]bool{"roll": true, "summary": true, "attr": true, "appliance": true, "info": true}
)

func elements(t *testing.T, fsys fs.FS, p string) (names []string, attrs map[string][]map[string]string) {
	t.Helper()
	b, err := fs.ReadFile(fsys, p)
	if err != nil {
		t.Fatal(err)
	}
	attrs = map[string][]map[string]string{}
	d := xml.NewDecoder(strings.NewReader(string(b)))
	for {
		tok, err := d.Token()
		if err != nil {
			if err.Error() == "EOF" {
				return names, attrs
			}
			t.Fatalf("%s: %v", p, err)
		}
		if se, ok := tok.(xml.StartElement); ok {
			names = append(names, se.Name.Local)
			m := map[string]string{}
			for _, a := range se.Attr {
				m[a.Name.Local] = a.Value
			}
			if se.Name.Local == "to" || se.Name.Local == "tail" || se.Name.Local == "head" {
				var s string
				if err := d.DecodeElement(&s, &se); err != nil {
					t.Fatalf("%s: %v", p, err)
				}
				m["text"] = strings.TrimSpace(s)
			}
			attrs[se.Name.Local] = append(attrs[se.Name.Local], m)
		}
	}
}

// TestRolls checks what the loader will rely on: each roll's manifest
// names its directory, every file is XML of Rocks' vocabulary, every node
// an edge or order names is defined by some built-in roll (or is an
// appliance root or HEAD/TAIL), and the three appliances exist.
func TestRolls(t *testing.T) {
	defined := map[string]string{}
	type ref struct{ file, node string }
	var refs []ref
	appliances := map[string]string{}
	for _, name := range Names() {
		r, err := Roll(name)
		if err != nil {
			t.Fatal(err)
		}
		tags, attrs := elements(t, r, "roll.xml")
		for _, tag := range tags {
			if !rollTags[tag] {
				t.Errorf("%s/roll.xml: unknown tag <%s>", name, tag)
			}
		}
		if got := attrs["roll"][0]["name"]; got != name {
			t.Errorf("%s/roll.xml names the roll %q", name, got)
		}
		for _, a := range attrs["appliance"] {
			appliances[a["name"]] = a["node"]
		}
		nodes, _ := fs.Glob(r, "nodes/*.xml")
		for _, n := range nodes {
			tags, _ := elements(t, r, n)
			for _, tag := range tags {
				if !nodeTags[tag] {
					t.Errorf("%s/%s: unknown tag <%s>", name, n, tag)
				}
			}
			node := strings.TrimSuffix(path.Base(n), ".xml")
			if other, dup := defined[node]; dup {
				t.Errorf("node %s defined by %s and %s", node, other, name)
			}
			defined[node] = name
		}
		graphs, _ := fs.Glob(r, "graphs/default/*.xml")
		if len(graphs) == 0 {
			t.Errorf("%s: no graphs/default/*.xml", name)
		}
		for _, g := range graphs {
			tags, attrs := elements(t, r, g)
			for _, tag := range tags {
				if !graphTags[tag] {
					t.Errorf("%s/%s: unknown tag <%s>", name, g, tag)
				}
			}
			f := name + "/" + g
			for _, e := range attrs["edge"] {
				refs = append(refs, ref{f, e["from"]}, ref{f, e["to"]})
			}
			for _, o := range attrs["order"] {
				refs = append(refs, ref{f, o["head"]}, ref{f, o["tail"]})
			}
			for _, k := range []string{"to", "tail", "head"} {
				for _, e := range attrs[k] {
					refs = append(refs, ref{f, e["text"]})
				}
			}
		}
	}
	for _, want := range []string{"compute", "compute-kvm", "frontend"} {
		if appliances[want] == "" {
			t.Errorf("no appliance %s", want)
		}
	}
	roots := map[string]bool{"HEAD": true, "TAIL": true, "": true, "server": true, "client": true}
	for _, root := range appliances {
		roots[root] = true
	}
	for _, r := range refs {
		if defined[r.node] == "" && !roots[r.node] {
			t.Errorf("%s names node %q, which no built-in roll defines", r.file, r.node)
		}
	}
}
