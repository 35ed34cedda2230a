// Command appliancebench times the appliance builder against mmdebstrap
// alone with the same package set, and compares the image's size with
// the installed size of its packages; bench/appliance/run builds and runs
// it. Machines are shared and noisy: read the ratios, not the times.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"ironbark/images/appliance"
	"ironbark/roll"
)

// computePackages is a compute node's package set as the built-in rolls
// list it: base (Debian minimal, ssh, time), hypervisor-xen (Xen, dom0
// kernel, libvirt's Xen driver) and ironbark-node (bridge, DHCP client).
const computePackages = "systemd-sysv udev kmod iproute2 ifupdown isc-dhcp-client ca-certificates linux-image-amd64 " +
	"dosfstools chrony openssh-server xen-hypervisor-4.17-amd64 xen-utils-4.17 xen-utils-common " +
	"libvirt-daemon libvirt-daemon-driver-xen libvirt-clients qemu-utils bridge-utils"

func main() {
	cache := flag.String("cache", "/var/cache/ironbark-lab/appliance", "package and base tree cache (kept)")
	pkgs := flag.String("packages", computePackages, "package set (space separated)")
	work := flag.String("dir", "", "work directory (default: a temporary one, removed after)")
	verbose := flag.Bool("v", false, "log the builder's steps")
	flag.Parse()
	if err := run(*cache, strings.Fields(*pkgs), *work, *verbose); err != nil {
		fmt.Fprintln(os.Stderr, "appliancebench:", err)
		os.Exit(1)
	}
}

// profile is a compute-style profile: the packages, a few files and a
// post script, as the built-in rolls give them.
func profile(pkgs []string, motd string) roll.Profile {
	o := roll.Origin{Roll: "bench", Node: "compute", Pos: "nodes/compute.xml:1"}
	p := roll.Profile{Appliance: "compute", Arch: "x86_64", OS: "debian", Release: "12"}
	for _, n := range pkgs {
		p.Packages = append(p.Packages, roll.Package{Name: n, Origin: o})
	}
	p.Files = []roll.File{
		{Path: "/etc/hostname", Mode: 0o644, Content: []byte("compute\n"), Origin: o},
		{Path: "/etc/motd", Mode: 0o644, Content: []byte(motd), Origin: o},
		{Path: "/etc/network/interfaces.d/br0", Mode: 0o644, Content: []byte("auto br0\niface br0 inet dhcp\n  bridge_ports eth0\n"), Origin: o},
		{Path: "/etc/ironbark/node.json", Mode: 0o600, Content: []byte("{}\n"), Origin: o},
	}
	p.Scripts = []roll.Script{{Body: "ln -sf /usr/share/zoneinfo/UTC /etc/localtime\n", Origin: o}}
	return p
}

func run(cache string, pkgs []string, work string, verbose bool) error {
	ctx := context.Background()
	if work == "" {
		d, err := os.MkdirTemp("", "appliancebench-*")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		work = d
	}
	log := slog.New(slog.DiscardHandler)
	if verbose {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	cfg := appliance.Config{Profile: profile(pkgs, "one\n"), CacheDir: cache, Output: filepath.Join(work, "compute.img"), Log: log}
	fmt.Printf("package set: %d packages requested (compute-style: base + hypervisor-xen + ironbark-node)\n", len(pkgs))

	// Warm the package cache (untimed): every later run installs from it.
	if _, err := appliance.Build(ctx, cfg); err != nil {
		return fmt.Errorf("warm-up build: %w", err)
	}

	// mmdebstrap alone, the same command the builder runs.
	mmRoot := filepath.Join(work, "mmdebstrap-root")
	cmd, err := cfg.MmdebstrapCommand(ctx, mmRoot)
	if err != nil {
		return err
	}
	syscall.Sync()
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("mmdebstrap: %v\n%s", err, out)
	}
	tMM := time.Since(start)
	installedKiB, nPkgs, err := installedSize(mmRoot)
	if err != nil {
		return err
	}
	treeBytes, err := duBytes(mmRoot)
	if err != nil {
		return err
	}
	os.RemoveAll(mmRoot)

	// The full build: the base tree again from the package cache.
	full := cfg
	full.Refresh = true
	syscall.Sync()
	start = time.Now()
	rf, err := appliance.Build(ctx, full)
	if err != nil {
		return fmt.Errorf("full build: %w", err)
	}
	tFull := time.Since(start)

	// One file changed: the base is reused.
	re := cfg
	re.Profile = profile(pkgs, "two\n")
	re.Output = filepath.Join(work, "compute2.img")
	syscall.Sync()
	start = time.Now()
	rr, err := appliance.Build(ctx, re)
	if err != nil {
		return fmt.Errorf("rebuild: %w", err)
	}
	tRe := time.Since(start)
	if !rr.BaseCached || rr.Digest == rf.Digest {
		return fmt.Errorf("rebuild did not reuse the base (cached %v) or made the same image", rr.BaseCached)
	}

	var st syscall.Stat_t
	if err := syscall.Stat(cfg.Output, &st); err != nil {
		return err
	}
	fmt.Printf("full build %.1fs, mmdebstrap alone %.1fs: ratio %.2f (goal <= 1.3)\n", tFull.Seconds(), tMM.Seconds(), tFull.Seconds()/tMM.Seconds())
	fmt.Printf("rebuild after one changed file %.1fs vs full build %.1fs: ratio %.3f (goal <= 0.1)\n", tRe.Seconds(), tFull.Seconds(), tRe.Seconds()/tFull.Seconds())
	inst := float64(installedKiB) * 1024
	fmt.Printf("image %d MiB (%d MiB allocated), %d packages installed: Installed-Size %d MiB, tree on disk %d MiB (docs, man pages, locales left out): image/installed %.2f, allocated/installed %.2f\n",
		rf.Size>>20, st.Blocks*512>>20, nPkgs, installedKiB>>10, treeBytes>>20, float64(rf.Size)/inst, float64(st.Blocks*512)/inst)
	return nil
}

// installedSize sums dpkg's Installed-Size (KiB) over the tree's packages.
func installedSize(root string) (kib int64, n int, err error) {
	out, err := exec.Command("dpkg-query", "--admindir="+filepath.Join(root, "var/lib/dpkg"), "-W", "-f", "${Installed-Size}\n").Output()
	if err != nil {
		return 0, 0, fmt.Errorf("dpkg-query: %w", err)
	}
	for _, l := range strings.Fields(string(out)) {
		v, err := strconv.ParseInt(l, 10, 64)
		if err == nil {
			kib += v
			n++
		}
	}
	return kib, n, nil
}

func duBytes(root string) (int64, error) {
	out, err := exec.Command("du", "-sxb", root).Output()
	if err != nil {
		return 0, fmt.Errorf("du: %w", err)
	}
	return strconv.ParseInt(strings.Fields(string(out))[0], 10, 64)
}
