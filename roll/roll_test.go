package roll

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files")

// golden compares got with testdata/golden/name, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	p := filepath.Join("testdata", "golden", name)
	if *update {
		if err := os.WriteFile(p, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from golden (go test -update rewrites it):\n--- got\n%s\n--- want\n%s", p, got, want)
	}
}

func loadRolls(t *testing.T, names ...string) []*Roll {
	t.Helper()
	var rs []*Roll
	for _, n := range names {
		r, err := Open(filepath.Join("testdata", "rolls", n))
		if err != nil {
			t.Fatal(err)
		}
		rs = append(rs, r)
	}
	return rs
}

func mustMerge(t *testing.T, names ...string) *Graph {
	t.Helper()
	g, err := Merge(loadRolls(t, names...)...)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// profileText renders a profile for golden files: readable, stable.
func profileText(p *Profile) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "appliance %s arch %s os %s release %s\n", p.Appliance, p.Arch, p.OS, p.Release)
	for _, n := range p.Nodes {
		fmt.Fprintf(&b, "node %s (%s %s)\n", n.Name, n.Roll, n.Pos)
	}
	for _, pk := range p.Packages {
		fmt.Fprintf(&b, "package %s (%s %s %s)\n", pk.Name, pk.Roll, pk.Node, pk.Pos)
	}
	for _, f := range p.Files {
		fmt.Fprintf(&b, "file %s %v owner=%q append=%v (%s %s %s)\n", f.Path, f.Mode, f.Owner, f.Append, f.Roll, f.Node, f.Pos)
		for _, l := range strings.SplitAfter(string(f.Content), "\n") {
			if l != "" {
				fmt.Fprintf(&b, "  | %s", strings.TrimSuffix(l, "\n")+"\n")
			}
		}
	}
	for _, s := range p.Scripts {
		fmt.Fprintf(&b, "post %q (%s %s %s)\n", s.Interpreter, s.Roll, s.Node, s.Pos)
		for _, l := range strings.SplitAfter(s.Body, "\n") {
			if l != "" {
				fmt.Fprintf(&b, "  | %s", strings.TrimSuffix(l, "\n")+"\n")
			}
		}
	}
	return b.Bytes()
}

func TestProfileGolden(t *testing.T) {
	cases := []struct {
		name      string
		rolls     []string
		appliance string
		attrs     map[string]string
	}{
		// The appliance alone: roll defaults (xen=yes for compute).
		{"compute", []string{"base"}, "compute", nil},
		// Coercion: "off" is false, so kvm instead of xen; ntp_server set
		// pulls in ntp, ordered after ssh.
		{"compute-kvm-ntp", []string{"base"}, "compute", map[string]string{"xen": "off", "ntp_server": "10.1.1.1"}},
		// A host's attributes and the xen_dom0_mem post condition.
		{"compute-host", []string{"base"}, "compute", map[string]string{"hostname": "compute-0-0", "rack": "0", "rank": "0", "xen_dom0_mem": "1024M"}},
		// arch guard on an edge: aarch64 gets kvm via the "not xen" edge and
		// u-boot-tools from the arch= package.
		{"compute-aarch64", []string{"base"}, "compute", map[string]string{"arch": "aarch64", "xen": "n"}},
		{"frontend", []string{"base"}, "frontend", nil},
		// extend-ssh adds a package and appends to a file; replace-kvm
		// swaps kvm's content for the site roll's.
		{"compute-site", []string{"base", "site"}, "compute", map[string]string{"xen": "false"}},
		// A roll that adds a node to compute, ordered after ssh.
		{"compute-monitor", []string{"base", "monitor"}, "compute", nil},
		{"frontend-monitor", []string{"base", "monitor"}, "frontend", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := mustMerge(t, c.rolls...)
			p, err := g.Profile(c.appliance, c.attrs)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, "profile-"+c.name+".txt", profileText(p))
		})
	}
}

// A roll that adds a node to compute changes compute's profile by that
// node and its package, and the frontend's not at all.
func TestAddedRollChangesOnlyItsAppliance(t *testing.T) {
	plain := mustMerge(t, "base")
	more := mustMerge(t, "base", "monitor")
	fa, err := plain.Profile("frontend", nil)
	if err != nil {
		t.Fatal(err)
	}
	fb, err := more.Profile("frontend", nil)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(profileText(fa), profileText(fb)) {
		t.Errorf("frontend profile changed by the monitor roll:\n%s\nvs\n%s", profileText(fa), profileText(fb))
	}
	ca, _ := plain.Profile("compute", nil)
	cb, _ := more.Profile("compute", nil)
	var added []string
	seen := map[string]bool{}
	for _, n := range ca.Nodes {
		seen[n.Name] = true
	}
	for _, n := range cb.Nodes {
		if !seen[n.Name] {
			added = append(added, n.Name+"@"+n.Roll)
		}
	}
	if got := strings.Join(added, ","); got != "prometheus-node@monitor" {
		t.Errorf("nodes added to compute = %q, want prometheus-node@monitor", got)
	}
	var pa, pb []string
	for _, p := range ca.Packages {
		pa = append(pa, p.Name)
	}
	for _, p := range cb.Packages {
		if p.Name != "prometheus-node-exporter" {
			pb = append(pb, p.Name)
		}
	}
	if len(cb.Packages) != len(ca.Packages)+1 || strings.Join(pa, " ") != strings.Join(pb, " ") {
		t.Errorf("packages: %v -> %v", pa, cb.Packages)
	}
	if len(cb.Files) != len(ca.Files) || len(cb.Scripts) != len(ca.Scripts) {
		t.Errorf("files or scripts changed")
	}
}

func TestDOTGolden(t *testing.T) {
	g := mustMerge(t, "base", "monitor")
	for _, c := range []struct {
		name   string
		pruned bool
		attrs  map[string]string
	}{
		{"compute-full", false, nil},
		{"compute-pruned", true, map[string]string{"xen": "no"}},
	} {
		var b bytes.Buffer
		if err := g.DOT(&b, "compute", c.attrs, c.pruned); err != nil {
			t.Fatal(err)
		}
		golden(t, "graph-"+c.name+".dot", b.Bytes())
	}
}

func TestLoadEach(t *testing.T) {
	rs, err := LoadEach(os.DirFS(filepath.Join("testdata", "rolls")), "test")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range rs {
		names = append(names, r.Name+"@"+r.Source)
	}
	if got := strings.Join(names, " "); got != "base@test:base monitor@test:monitor site@test:site" {
		t.Errorf("LoadEach: %s", got)
	}
}
