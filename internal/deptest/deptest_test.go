package deptest

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// pkg is the part of `go list -json` the rules read.
type pkg struct {
	ImportPath string
	Doc        string
	Standard   bool
	CgoFiles   []string
	Imports    []string
	Error      *struct{ Err string }
}

// goList runs `go list -json` in the module root with extra environment
// and returns the packages.
func goList(t *testing.T, env []string, args ...string) []pkg {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	cmd := exec.Command("go", append([]string{"list", "-json=ImportPath,Doc,Standard,CgoFiles,Imports,Error"}, args...)...)
	cmd.Dir = filepath.Dir(strings.TrimSpace(string(out)))
	cmd.Env = append(os.Environ(), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	b, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	var ps []pkg
	for dec := json.NewDecoder(bytes.NewReader(b)); ; {
		var p pkg
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		if p.Error != nil {
			t.Errorf("%s: %s", p.ImportPath, p.Error.Err)
		}
		ps = append(ps, p)
	}
	return ps
}

// TestPackageDocs wants a doc comment on every package: the first thing
// a newcomer reads about it.
func TestPackageDocs(t *testing.T) {
	for _, p := range goList(t, nil, "./...") {
		if strings.TrimSpace(p.Doc) == "" {
			t.Errorf("%s has no package doc comment (add a doc.go)", p.ImportPath)
		}
	}
}

// forbid fails for each dependency of roots matching one of the bad
// prefixes, with the package that imports it.
func forbid(t *testing.T, env []string, roots []string, bad ...string) []pkg {
	t.Helper()
	deps := goList(t, env, append([]string{"-deps"}, roots...)...)
	for _, p := range deps {
		for _, imp := range p.Imports {
			for _, b := range bad {
				if imp == b || strings.HasPrefix(imp, b+"/") {
					t.Errorf("%s imports %s (forbidden for %s)", p.ImportPath, imp, strings.Join(roots, ", "))
				}
			}
		}
	}
	return deps
}

// TestInstallerIsStatic: the installer is /init of the installer
// initramfs and, built with -tags frontend, of the ISO; built with
// CGO_ENABLED=0 it must build so (no cgo anywhere under it) and link no
// libvirt. The node installer that PXE serves links no TUI, controller or
// store either: those come only with the ISO's frontend mode
// (installer/frontendinit).
func TestInstallerIsStatic(t *testing.T) {
	roots := []string{"./cmd/ironbark-installer"}
	forbid(t, []string{"CGO_ENABLED=0"}, roots, "libvirt.org/go/libvirt", "runtime/cgo", "C",
		"ironbark/tui", "github.com/charmbracelet", "ironbark/controller", "ironbark/internal/store", "ironbark/installer/frontendinit")
	for _, tags := range []string{"", "-tags=frontend"} {
		args := []string{"-deps"}
		if tags != "" {
			args = append(args, tags)
		}
		deps := goList(t, []string{"CGO_ENABLED=1"}, append(args, roots...)...)
		for _, p := range deps {
			// With cgo available, no package outside the standard library
			// may bring its own C code in.
			if !p.Standard && len(p.CgoFiles) > 0 {
				t.Errorf("%s has cgo files %v: the installer (%s) must stay pure Go", p.ImportPath, p.CgoFiles, tags)
			}
			for _, imp := range p.Imports {
				if strings.HasPrefix(imp, "libvirt.org/") {
					t.Errorf("%s imports %s: the installer (%s) links no libvirt", p.ImportPath, imp, tags)
				}
			}
		}
		if tags != "" && !slices.ContainsFunc(deps, func(p pkg) bool { return p.ImportPath == "ironbark/installer/frontendinit" }) {
			t.Errorf("the installer built with %s lacks the frontend installer", tags)
		}
	}
}

// TestNodeAgentIndependent: the node agent runs on the nodes and speaks
// to the controller only over the node API (internal/nodeapi).
func TestNodeAgentIndependent(t *testing.T) {
	forbid(t, nil, []string{"./nodeagent/...", "./cmd/ironbark-node"}, "ironbark/controller")
}

// TestProtocolPackagesHaveNoStore: the wire protocols are parse, marshal
// and serve; what they remember lives behind an interface they declare.
func TestProtocolPackagesHaveNoStore(t *testing.T) {
	forbid(t, nil, []string{"./controller/ec2", "./pxe/dhcp", "./pxe/tftp"},
		"ironbark/internal/store", "modernc.org/sqlite", "github.com/jackc/pgx")
}

// TestFrontendBinaryLinksNoLibvirt: the frontend binary is pure Go; only
// ironbark-node links libvirt.
func TestFrontendBinaryLinksNoLibvirt(t *testing.T) {
	forbid(t, nil, []string{"./cmd/ironbark"}, "libvirt.org/go/libvirt")
}
