package lab

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"ironbark/internal/filelock"
)

// Dom0Packages is what the lab's Xen dom0 root holds on top of Debian's
// essential set: the hypervisor, the generic kernel (the cloud kernel has
// no CONFIG_XEN_DOM0), the xl toolstack and libvirt's Xen driver, and
// qemu-img for the node agent's disks.
var Dom0Packages = []string{
	"xen-hypervisor-4.17-amd64", "xen-utils-4.17", "linux-image-amd64",
	"libvirt-daemon-driver-xen", "libvirt-clients", "qemu-utils",
	"kmod", "iproute2", "mount", "procps",
	// nft: tests read the node's ruleset (an operator would too).
	"nftables",
}

// Dom0 is a Debian root for a Xen dom0, built once with mmdebstrap and
// kept in the lab cache, with the pieces qemu boots from it.
type Dom0 struct {
	Dir     string // the unpacked root
	Image   string // Dir as a raw ext4 image (read-only: boot an overlay)
	Xen     string // the hypervisor, gunzipped (qemu's multiboot loader takes no gzip)
	Vmlinuz string // the dom0 kernel
	Version string // its version, the directory under lib/modules
}

// ModulesDir is the dom0 kernel's module tree.
func (d *Dom0) ModulesDir() string { return filepath.Join(d.Dir, "lib", "modules", d.Version) }

// XenDom0 returns the cached dom0 root, building it on first use (about a
// minute on two idle cores: mmdebstrap from Debian's archive, then
// mkfs.ext4 -d). The cache key is the package list, so a change to it
// builds a new root; concurrent test binaries share it under a lock.
func XenDom0(t testing.TB) *Dom0 {
	t.Helper()
	Require(t, "mmdebstrap", "mkfs.ext4", "gzip")
	d, err := xenDom0()
	if err != nil {
		Missing(t, "xen dom0 root: "+err.Error())
	}
	return d
}

func xenDom0() (*Dom0, error) {
	pkgs := append([]string(nil), Dom0Packages...)
	sort.Strings(pkgs)
	sum := sha256.Sum256([]byte("dom0 v1\n" + strings.Join(pkgs, "\n")))
	dir := filepath.Join(CacheDir(), "xen-dom0", hex.EncodeToString(sum[:8]))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	unlock, err := filelock.Lock(filepath.Join(dir, ".lock"))
	if err != nil {
		return nil, err
	}
	defer unlock()
	if d, err := findDom0(dir); err == nil {
		return d, nil
	}
	root := filepath.Join(dir, "root")
	for _, p := range []string{root, root + ".tmp", filepath.Join(dir, "root.img"), filepath.Join(dir, "xen")} {
		os.RemoveAll(p)
	}
	args := []string{"--variant=essential", "--include=" + strings.Join(pkgs, ","),
		"--dpkgopt=path-exclude=/usr/share/man/*", "--dpkgopt=path-exclude=/usr/share/locale/*",
		"--dpkgopt=path-exclude=/usr/share/doc/*", "--dpkgopt=path-exclude=/usr/share/info/*",
		"bookworm", root + ".tmp", "http://deb.debian.org/debian"}
	if out, err := exec.Command("mmdebstrap", args...).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("mmdebstrap: %v: %s", err, tail(string(out), 2000))
	}
	if err := os.Rename(root+".tmp", root); err != nil {
		return nil, err
	}
	xens, _ := filepath.Glob(filepath.Join(root, "boot", "xen-*.gz"))
	if len(xens) == 0 {
		return nil, fmt.Errorf("no boot/xen-*.gz in the dom0 root")
	}
	sort.Strings(xens)
	gz := xens[len(xens)-1]
	xen, err := exec.Command("gzip", "-dc", gz).Output()
	if err != nil {
		return nil, fmt.Errorf("gunzip %s: %w", gz, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "xen.tmp"), xen, 0o644); err != nil {
		return nil, err
	}
	img := filepath.Join(dir, "root.img")
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-L", "dom0", "-d", root, img+".tmp", "2G").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("mkfs.ext4 -d: %v: %s", err, out)
	}
	if err := os.Rename(img+".tmp", img); err != nil {
		return nil, err
	}
	// The hypervisor last: its presence means the cache entry is whole.
	if err := os.Rename(filepath.Join(dir, "xen.tmp"), filepath.Join(dir, "xen")); err != nil {
		return nil, err
	}
	return findDom0(dir)
}

func findDom0(dir string) (*Dom0, error) {
	d := &Dom0{Dir: filepath.Join(dir, "root"), Image: filepath.Join(dir, "root.img"), Xen: filepath.Join(dir, "xen")}
	if !fileExists(d.Xen) || !fileExists(d.Image) {
		return nil, fmt.Errorf("dom0 cache %s incomplete", dir)
	}
	k, err := findKernel(d.Dir)
	if err != nil {
		return nil, err
	}
	d.Vmlinuz, d.Version = k.Vmlinuz, k.Version
	return d, nil
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
