package lab

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"ironbark/internal/filelock"
)

// Kernel is a Debian cloud kernel unpacked from its .deb.
type Kernel struct {
	Version string // e.g. 6.1.0-28-cloud-amd64
	Vmlinuz string // path of the bzImage
	Root    string // unpacked package root: Root/lib/modules/Version/...
}

// ModulesDir is the kernel's module tree.
func (k *Kernel) ModulesDir() string { return filepath.Join(k.Root, "lib", "modules", k.Version) }

// CacheDir is where lab downloads live across test runs
// ($IRONBARK_LAB_CACHE, default /var/cache/ironbark-lab).
func CacheDir() string {
	if d := os.Getenv("IRONBARK_LAB_CACHE"); d != "" {
		return d
	}
	return "/var/cache/ironbark-lab"
}

// GuestKernel returns Debian's cloud kernel, fetched once with
// `apt-get download` (the package linux-image-cloud-amd64 depends on) and
// unpacked with dpkg -x into the cache. Concurrent test binaries share it
// under a file lock.
func GuestKernel(t testing.TB) *Kernel {
	t.Helper()
	Require(t, "apt-get", "apt-cache", "dpkg")
	k, err := guestKernel()
	if err != nil {
		Missing(t, "guest kernel: "+err.Error())
	}
	return k
}

// CachedGuestKernel is GuestKernel for programs outside tests
// (cmd/ironbark-rack): the same cache, an error instead of a skip.
func CachedGuestKernel() (*Kernel, error) { return guestKernel() }

func guestKernel() (*Kernel, error) {
	dir := filepath.Join(CacheDir(), "kernel")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	unlock, err := filelock.Lock(filepath.Join(dir, ".lock"))
	if err != nil {
		return nil, err
	}
	defer unlock()
	root := filepath.Join(dir, "root")
	os.RemoveAll(root + ".tmp")
	if k, err := findKernel(root); err == nil && fileExists(k.ModulesDir()+"/modules.dep") {
		return k, nil
	}
	pkg, err := cloudKernelPackage()
	if err != nil {
		return nil, err
	}
	debs := filepath.Join(dir, "debs")
	if err := os.MkdirAll(debs, 0o755); err != nil {
		return nil, err
	}
	cmd := exec.Command("apt-get", "download", pkg)
	cmd.Dir = debs
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("apt-get download %s: %v: %s", pkg, err, out)
	}
	matches, _ := filepath.Glob(filepath.Join(debs, pkg+"_*.deb"))
	if len(matches) == 0 {
		return nil, fmt.Errorf("apt-get download %s: no .deb", pkg)
	}
	tmp := root + ".tmp"
	os.RemoveAll(root)
	if out, err := exec.Command("dpkg", "-x", matches[0], tmp).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("dpkg -x: %v: %s", err, out)
	}
	k, err := findKernel(tmp)
	if err != nil {
		return nil, err
	}
	// The .deb carries no modules.dep: depmod writes it at install time.
	if out, err := exec.Command("depmod", "-b", tmp, k.Version).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("depmod: %v: %s", err, out)
	}
	// Make the tree readable by qemu running as libvirt-qemu.
	_ = exec.Command("chmod", "-R", "a+rX", tmp).Run()
	if err := os.Rename(tmp, root); err != nil {
		return nil, err
	}
	return findKernel(root)
}

// cloudKernelPackage asks apt which versioned package the metapackage
// linux-image-cloud-amd64 currently depends on.
func cloudKernelPackage() (string, error) {
	out, err := exec.Command("apt-cache", "depends", "linux-image-cloud-amd64").Output()
	if err != nil {
		return "", fmt.Errorf("apt-cache depends linux-image-cloud-amd64: %w", err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		line = strings.TrimSpace(line)
		if name, ok := strings.CutPrefix(line, "Depends: "); ok && strings.HasPrefix(name, "linux-image-") {
			return name, nil
		}
	}
	return "", fmt.Errorf("apt-cache depends linux-image-cloud-amd64: no linux-image dependency in %q", out)
}

func findKernel(root string) (*Kernel, error) {
	vms, _ := filepath.Glob(filepath.Join(root, "boot", "vmlinuz-*"))
	if len(vms) == 0 {
		return nil, fmt.Errorf("no kernel under %s", root)
	}
	sort.Strings(vms)
	v := vms[len(vms)-1]
	ver := strings.TrimPrefix(filepath.Base(v), "vmlinuz-")
	return &Kernel{Version: ver, Vmlinuz: v, Root: root}, nil
}

// Busybox returns the path of a static busybox (Debian's busybox-static).
func Busybox(t testing.TB) string {
	t.Helper()
	p, err := StaticBusybox()
	if err != nil {
		Missing(t, err.Error())
	}
	return p
}

// StaticBusybox is Busybox for programs outside tests.
func StaticBusybox() (string, error) {
	for _, p := range []string{"/bin/busybox", "/usr/bin/busybox"} {
		if out, err := exec.Command("file", "-L", p).Output(); err == nil && strings.Contains(string(out), "statically linked") {
			return p, nil
		}
		if _, err := os.Stat(p); err == nil {
			if _, err := exec.LookPath("file"); err != nil {
				return p, nil // cannot check; busybox-static is what make deps installs
			}
		}
	}
	return "", fmt.Errorf("static busybox not found (apt-get install busybox-static)")
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }
