package rack

import (
	"context"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"ironbark/internal/lab"
	"ironbark/roll/builtin"
)

// TestRack is issue 11's bring-up, non-interactive: the ISO (cached),
// the frontend installed from it (the installed disk cached as a qcow2
// base), one blank Xen machine that PXE-installs the compute appliance
// from the frontend and enrolls as compute-0-0, the eucarc from the
// frontend and the AWS CLI against it (with instance, a Xen PV guest run
// on that node with the AWS CLI: DHCP, metadata, its marker in
// get-console-output, terminated); then everything it made is gone.
// One compute machine, not make rack's two: two Xen hosts under TCG on
// two cores would double the suite's longest test.
func TestRack(t *testing.T) {
	lab.Require(t, "qemu-system-x86_64", "qemu-img", "ip", "go", "mmdebstrap", "unshare", "chroot", "grub-mkimage",
		"apt-get", "syslinux", "xorriso", "ssh-keygen", "aws")
	if _, err := os.Stat("/usr/lib/ipxe/undionly.kpxe"); err != nil {
		lab.Missing(t, "/usr/lib/ipxe/undionly.kpxe (ipxe package)")
	}
	// The ISO's frontend is the frontend appliance from the built-in
	// rolls; it boots as a frontend (services from the installer's data
	// partition, the admin's SSH key, the node API's name on the private
	// side) once the frontend roll has its frontend-system node.
	if _, err := fs.Stat(builtin.FS(), "frontend/nodes/frontend-system.xml"); err != nil {
		lab.Missing(t, "the frontend roll has no frontend-system node yet: the frontend appliance does not boot as a frontend")
	}
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..", "..")
	var out strings.Builder
	const instance = true
	res, err := Run(context.Background(), Config{Root: root, Nodes: 1, Check: true, Instance: instance,
		Out: &out, Log: slog.New(slog.NewTextHandler(&testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))})
	t.Logf("rack output:\n%s", out.String())
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Nodes) != 1 || res.Nodes[0] != "compute-0-0" {
		t.Errorf("enrolled nodes %v, want [compute-0-0]", res.Nodes)
	}
	// The instance ran on the node: DHCP, metadata, its marker in
	// get-console-output (the AWS CLI), then terminated.
	if instance && (res.Instance == "" || !strings.Contains(res.Console, instanceMarker) || !strings.Contains(res.Console, "INSTANCE-ID="+res.Instance) ||
		!strings.Contains(res.Console, "DHCP: eth0 ")) {
		t.Errorf("instance %q console:\n%s", res.Instance, res.Console)
	}
	for _, want := range []string{"[5/6] done", "[6/6] checks done", "AVAILABILITYZONES\tironbark\tavailable"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q", want)
		}
	}
	// Nothing left behind: the namespace (and every bridge and tap in
	// it), root-namespace links, qemu processes.
	if res.Namespace == "" {
		t.Fatal("no namespace reported")
	}
	if _, err := os.Stat(filepath.Join("/run/netns", res.Namespace)); err == nil {
		t.Errorf("namespace %s left behind", res.Namespace)
	}
	for _, l := range res.Links {
		if _, err := netlink.LinkByName(l); err == nil {
			t.Errorf("link %s left behind", l)
		}
	}
	if b, err := exec.Command("pgrep", "-f", res.Work).Output(); err == nil && len(strings.TrimSpace(string(b))) > 0 {
		t.Errorf("processes of the run left behind: %s", b)
	}
	if _, err := os.Stat(res.Work); err == nil {
		t.Errorf("run directory %s left behind", res.Work)
	}
}

type testWriter struct{ t *testing.T }

func (w *testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
