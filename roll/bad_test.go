package roll

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeRoll writes files (path -> content) as a roll directory.
func writeRoll(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for p, c := range files {
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func manifest(name string) string {
	return `<roll name="` + name + `" version="1" arch="x86_64" os="debian">
  <appliance name="` + name + `-app" node="a"/>
</roll>`
}

const emptyNode = "<kickstart>\n</kickstart>\n"

// Every bad roll is refused with the file and line at fault.
func TestBadInputRefused(t *testing.T) {
	cases := []struct {
		name  string
		rolls []map[string]string
		want  []string // substrings of the error
		is    error
	}{
		{"graph cycle", []map[string]string{{
			"roll.xml": manifest("r"), "nodes/a.xml": emptyNode, "nodes/b.xml": emptyNode, "nodes/c.xml": emptyNode,
			"graphs/default/r.xml": "<graph>\n<edge from=\"a\" to=\"b\"/>\n<edge from=\"b\" to=\"c\"/>\n<edge from=\"c\" to=\"a\"/>\n</graph>\n",
		}}, []string{"a -> b -> c -> a", "graphs/default/r.xml:4"}, ErrCycle},
		{"order cycle", []map[string]string{{
			"roll.xml": manifest("r"), "nodes/a.xml": emptyNode, "nodes/b.xml": emptyNode,
			"graphs/default/r.xml": "<graph>\n<edge from=\"a\" to=\"b\"/>\n<order head=\"a\" tail=\"b\"/>\n<order head=\"b\">\n<tail>a</tail>\n</order>\n</graph>\n",
		}}, []string{"order graph", "graphs/default/r.xml:4"}, ErrCycle},
		{"node defined differently by two rolls", []map[string]string{
			{"roll.xml": manifest("r"), "nodes/a.xml": emptyNode, "nodes/x.xml": "<kickstart><package>vim</package></kickstart>"},
			{"roll.xml": manifest("s"), "nodes/x.xml": "<kickstart><package>emacs</package></kickstart>"},
		}, []string{"roll s: nodes/x.xml", "roll r (nodes/x.xml)"}, ErrConflict},
		{"unknown tag", []map[string]string{{
			"roll.xml": manifest("r"), "nodes/a.xml": "<kickstart>\n  <package>vim</package>\n  <packages>emacs</packages>\n</kickstart>\n",
		}}, []string{"nodes/a.xml:3", "unknown tag <packages>"}, nil},
		{"condition does not parse", []map[string]string{{
			"roll.xml": manifest("r"), "nodes/a.xml": "<kickstart>\n\n  <package cond=\"xen ==\">vim</package>\n</kickstart>\n",
		}}, []string{"nodes/a.xml:3", `condition "xen =="`}, nil},
		{"condition in a graph does not parse", []map[string]string{{
			"roll.xml": manifest("r"), "nodes/a.xml": emptyNode, "nodes/b.xml": emptyNode,
			"graphs/default/r.xml": "<graph>\n<edge from=\"a\">\n<to cond=\"__import__('os').system('x')\">b</to>\n</edge>\n</graph>\n",
		}}, []string{"graphs/default/r.xml:3", "condition"}, nil},
		{"edge to a node no roll has", []map[string]string{{
			"roll.xml": manifest("r"), "nodes/a.xml": emptyNode,
			"graphs/default/r.xml": "<graph>\n<edge from=\"a\" to=\"nope\"/>\n</graph>\n",
		}}, []string{"graphs/default/r.xml:2", "node nope"}, nil},
		{"extend of a node no roll has", []map[string]string{{
			"roll.xml": manifest("r"), "nodes/a.xml": emptyNode, "nodes/extend-nope.xml": emptyNode,
		}}, []string{"nodes/extend-nope.xml", "nope"}, nil},
		{"malformed XML", []map[string]string{{
			"roll.xml": manifest("r"), "nodes/a.xml": "<kickstart>\n<package>vim</pkg>\n</kickstart>\n",
		}}, []string{"nodes/a.xml:2"}, nil},
		{"unknown attribute", []map[string]string{{
			"roll.xml": manifest("r"), "nodes/a.xml": "<kickstart>\n<file name=\"/x\" perm=\"0644\">x</file>\n</kickstart>\n",
		}}, []string{"nodes/a.xml:2", `unknown attribute "perm"`}, nil},
		{"template does not parse", []map[string]string{{
			"roll.xml": manifest("r"), "nodes/a.xml": "<kickstart>\n<post>\necho ok\necho {{.x</post>\n</kickstart>\n",
		}}, []string{"nodes/a.xml:4", "template: unclosed action"}, nil},
		{"not a Debian package name", []map[string]string{{
			"roll.xml": manifest("r"), "nodes/a.xml": "<kickstart>\n<package>Vim_Editor</package>\n</kickstart>\n",
		}}, []string{"nodes/a.xml:2", "Debian package name"}, nil},
		{"src outside files/ and bin/", []map[string]string{{
			"roll.xml": manifest("r"), "nodes/a.xml": "<kickstart>\n<file name=\"/etc/passwd\" src=\"../../etc/passwd\"/>\n</kickstart>\n",
		}}, []string{"nodes/a.xml:2", "files/"}, nil},
		{"appliance root missing", []map[string]string{{
			"roll.xml": "<roll name=\"r\" version=\"1\" arch=\"x86_64\" os=\"debian\">\n<appliance name=\"x\" node=\"nope\"/>\n</roll>\n",
		}}, []string{"roll.xml:2", "nope"}, nil},
		{"manifest without version", []map[string]string{{
			"roll.xml": "<roll name=\"r\" arch=\"x86_64\" os=\"debian\"/>\n",
		}}, []string{"roll.xml:1", "no version"}, nil},
		{"two appliances of one name", []map[string]string{
			{"roll.xml": manifest("r"), "nodes/a.xml": emptyNode},
			{"roll.xml": "<roll name=\"s\" version=\"1\" arch=\"x86_64\" os=\"debian\">\n<appliance name=\"r-app\" node=\"a\"/>\n</roll>\n"},
		}, []string{"roll s: roll.xml:2", "r-app"}, ErrConflict},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var rs []*Roll
			var err error
			for _, files := range c.rolls {
				var r *Roll
				r, err = Open(writeRoll(t, files))
				if err != nil {
					break
				}
				rs = append(rs, r)
			}
			if err == nil {
				_, err = Merge(rs...)
			}
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if c.is != nil && !errors.Is(err, c.is) {
				t.Errorf("error %q is not %v", err, c.is)
			}
		})
	}
}

func TestRollForAnotherArch(t *testing.T) {
	r, err := Open(writeRoll(t, map[string]string{
		"roll.xml": "<roll name=\"arm\" version=\"1\" arch=\"aarch64\" os=\"debian\"/>",
	}))
	if err != nil {
		t.Fatal(err)
	}
	err = r.CheckTarget("x86_64", "debian")
	if !errors.Is(err, ErrWrongTarget) || !strings.Contains(err.Error(), "roll.xml") {
		t.Errorf("CheckTarget = %v", err)
	}
	if err := r.CheckTarget("arm64", "debian"); err != nil {
		t.Errorf("arm64 is aarch64: %v", err)
	}
	any, _ := Open(filepath.Join("testdata", "rolls", "monitor"))
	if err := any.CheckTarget("x86_64", "debian"); err != nil {
		t.Errorf("arch any: %v", err)
	}
}

// A template reading an attribute the host lacks fails with the file:line
// of the line that reads it.
func TestMissingAttributeInTemplate(t *testing.T) {
	r, err := Open(writeRoll(t, map[string]string{
		"roll.xml":    manifest("r"),
		"nodes/a.xml": "<kickstart>\n<file name=\"/etc/x\">\n{{.no_such_attr}}\n</file>\n</kickstart>\n",
	}))
	if err != nil {
		t.Fatal(err)
	}
	g, err := Merge(r)
	if err != nil {
		t.Fatal(err)
	}
	_, err = g.Profile("r-app", nil)
	if err == nil || !strings.Contains(err.Error(), "roll r: nodes/a.xml:3: template") || !strings.Contains(err.Error(), "no_such_attr") {
		t.Errorf("Profile = %v", err)
	}
}
