package roll

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzParseCond: the parser never panics, and what it accepts evaluates
// without panicking and parses again from its own text.
func FuzzParseCond(f *testing.F) {
	for _, s := range []string{"", "xen", "not xen and cpus > 4", "(a or b) and c != 'x'", `name == "compute-0-0"`,
		"a && !b || c", "-1 < x", "1.5 >= y", "((a))", "x ==", "'"} {
		f.Add(s)
	}
	attrs := map[string]string{"xen": "yes", "a": "1", "b": "off", "c": "x", "cpus": "8", "name": "compute-0-0"}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseCond(s)
		if err != nil {
			return
		}
		v := c.Eval(attrs)
		c2, err := ParseCond(c.String())
		if err != nil {
			t.Fatalf("reparse %q: %v", c.String(), err)
		}
		if c2.Eval(attrs) != v {
			t.Fatalf("%q evaluates differently after reparse", s)
		}
	})
}

// FuzzParseNode: node and graph files from anyone never panic the reader;
// errors carry a position.
func FuzzParseNode(f *testing.F) {
	for _, dir := range []string{"base", "monitor", "site"} {
		for _, sub := range []string{"nodes", "graphs/default"} {
			ents, _ := os.ReadDir(filepath.Join("testdata", "rolls", dir, sub))
			for _, e := range ents {
				b, err := os.ReadFile(filepath.Join("testdata", "rolls", dir, sub, e.Name()))
				if err == nil {
					f.Add(b)
				}
			}
		}
	}
	f.Add([]byte("<kickstart><file name=\"/x\" src=\"files/a\"/></kickstart>"))
	f.Add([]byte("<graph><edge from=\"a\"><to cond=\"x\">b</to></edge><order head=\"HEAD\" tail=\"a\"/></graph>"))
	files := map[string][]byte{"files/a": []byte("a")}
	f.Fuzz(func(t *testing.T, b []byte) {
		n, err := parseNode("r", "nodes/x.xml", "x", b, files)
		if err == nil {
			g := &Graph{rolls: map[string]*Roll{"r": {Files: files}}}
			for _, it := range n.Items {
				if it.Kind == ItemFile {
					g.renderFile("r", it, map[string]string{"arch": "x86_64"})
				}
			}
		}
		parseGraph("r", "graphs/default/r.xml", b)
		parseManifest("roll.xml", b)
	})
}

// FuzzArchive: an archive from anyone never panics the reader or the
// verifier.
func FuzzArchive(f *testing.F) {
	files, err := readTree(os.DirFS(filepath.Join("testdata", "rolls", "monitor")))
	if err != nil {
		f.Fatal(err)
	}
	b, err := archiveBytes(files, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte{0x1f, 0x8b, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := parseArchive(b)
		if err != nil {
			return
		}
		a.Verify(nil)
		if a.CheckSums() == nil {
			a.Roll()
		}
	})
}
