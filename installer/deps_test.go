package installer_test

import (
	"os/exec"
	"strings"
	"testing"
)

// The installer initramfs' /init is a static pure-Go binary: it must not
// link cgo or libvirt (internal/deptest guards the rest: no TUI on nodes).
func TestInstallerBinaryDeps(t *testing.T) {
	cmd := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}} {{len .CgoFiles}}", "ironbark/cmd/ironbark-installer")
	cmd.Env = append(cmd.Environ(), "CGO_ENABLED=0")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		pkg, cgo, _ := strings.Cut(l, " ")
		if strings.HasPrefix(pkg, "libvirt.org/") || strings.HasPrefix(pkg, "ironbark/nodeagent") {
			t.Errorf("the installer links %s", pkg)
		}
		if cgo != "0" {
			t.Errorf("the installer links %s, which has cgo files", pkg)
		}
	}
	// With cgo on, still nothing of libvirt.
	out, err = exec.Command("go", "list", "-deps", "ironbark/cmd/ironbark-installer").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	if strings.Contains(string(out), "libvirt.org/") {
		t.Error("the installer links libvirt")
	}
}
