package appliance

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"ironbark/images/initramfs"
	"ironbark/internal/filelock"
)

// baseTree is a finished, cached base tree.
type baseTree struct {
	key    string
	root   string
	cached bool
	// unlock releases the base's lock, held for the whole build so that
	// a --refresh elsewhere cannot replace a tree mounted as a lower dir.
	unlock func()
}

// baseSpec is everything that decides a base tree's content; its hash is
// the cache key.
type baseSpec struct {
	OS       string   `json:"os"`
	Suite    string   `json:"suite,omitempty"`
	Arch     string   `json:"arch"`
	Variant  string   `json:"variant,omitempty"`
	Mirror   string   `json:"mirror,omitempty"`
	Security string   `json:"security,omitempty"`
	Packages []string `json:"packages,omitempty"` // sorted, unique
	Epoch    int64    `json:"epoch"`
	Tool     string   `json:"tool"` // mmdebstrap version, or busybox + kernel digests
}

func (s baseSpec) key() string {
	b, _ := json.Marshal(s)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:12])
}

// base returns the cached base tree for c, building it on a miss. Builds
// of the same key wait for each other (a lock file per key).
func (c *Config) base(ctx context.Context, log *slog.Logger) (*baseTree, error) {
	spec, err := c.baseSpec(ctx)
	if err != nil {
		return nil, err
	}
	key := spec.key()
	dir := filepath.Join(c.CacheDir, "base", key)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("appliance base: %w", err)
	}
	unlock, err := filelock.Lock(filepath.Join(dir, ".lock"))
	if err != nil {
		return nil, err
	}
	keep := false
	defer func() {
		if !keep {
			unlock()
		}
	}()
	root := filepath.Join(dir, "root")
	done := filepath.Join(dir, "done")
	if _, err := os.Stat(done); err == nil && !c.Refresh {
		log.Info("base tree cached", "key", key, "packages", len(spec.Packages))
		keep = true
		return &baseTree{key: key, root: root, cached: true, unlock: unlock}, nil
	}
	os.Remove(done)
	tmp := root + ".tmp"
	for _, p := range []string{tmp, root} {
		if err := os.RemoveAll(p); err != nil {
			return nil, fmt.Errorf("appliance base: %w", err)
		}
	}
	start := time.Now()
	switch spec.OS {
	case OSBusybox:
		err = c.busyboxBase(ctx, tmp)
	default:
		err = c.debianBase(ctx, spec, tmp, log)
	}
	if err != nil {
		os.RemoveAll(tmp)
		return nil, err
	}
	if err := os.Rename(tmp, root); err != nil {
		return nil, fmt.Errorf("appliance base: %w", err)
	}
	b, _ := json.MarshalIndent(spec, "", "  ")
	if err := os.WriteFile(filepath.Join(dir, "spec.json"), b, 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(done, nil, 0o644); err != nil {
		return nil, err
	}
	log.Info("base tree built", "key", key, "packages", len(spec.Packages), "took", time.Since(start).Round(time.Millisecond))
	keep = true
	return &baseTree{key: key, root: root, unlock: unlock}, nil
}

func (c *Config) baseSpec(ctx context.Context) (baseSpec, error) {
	s := baseSpec{OS: c.Profile.OS, Arch: "amd64", Epoch: c.Epoch.Unix()}
	if s.OS == OSBusybox {
		bb, err := FileDigest(c.Busybox)
		if err != nil {
			return s, fmt.Errorf("appliance base: busybox: %w (apt-get install busybox-static)", err)
		}
		k, err := findKernel(c.Kernel)
		if err != nil {
			return s, err
		}
		kd, err := FileDigest(k.vmlinuz)
		if err != nil {
			return s, err
		}
		s.Tool = "busybox " + bb + " kernel " + k.version + " " + kd
		return s, nil
	}
	s.Suite, s.Variant, s.Mirror, s.Security = "bookworm", c.Variant, c.Mirror, c.Security
	seen := map[string]bool{}
	for _, p := range c.Profile.Packages {
		if !seen[p.Name] {
			seen[p.Name] = true
			s.Packages = append(s.Packages, p.Name)
		}
	}
	sort.Strings(s.Packages)
	out, err := exec.CommandContext(ctx, "mmdebstrap", "--version").Output()
	if err != nil {
		return s, fmt.Errorf("appliance base: mmdebstrap: %w (apt-get install mmdebstrap)", err)
	}
	s.Tool = strings.TrimSpace(string(out))
	return s, nil
}

// sources is the apt sources.list of a Debian base.
func (s baseSpec) sources() string {
	var b strings.Builder
	fmt.Fprintf(&b, "deb %s %s main\n", s.Mirror, s.Suite)
	fmt.Fprintf(&b, "deb %s %s-updates main\n", s.Mirror, s.Suite)
	if s.Security != "" {
		fmt.Fprintf(&b, "deb %s %s-security main\n", s.Security, s.Suite)
	}
	return b.String()
}

// debianBase makes the tree with mmdebstrap. A private apt (its own
// lists under the cache, nothing of the host's apt touched) checks the
// package names against the archive at the same time, so an unknown
// package fails in seconds, not after the essential set is installed,
// with the node that asked for it.
func (c *Config) debianBase(ctx context.Context, s baseSpec, tree string, log *slog.Logger) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	resolved := make(chan error, 1)
	go func() { resolved <- c.resolve(ctx, s, log) }()
	var out bytes.Buffer
	built := make(chan error, 1)
	go func() {
		cmd, err := c.mmdebstrap(ctx, s, tree)
		if err != nil {
			built <- err
			return
		}
		cmd.Stdout, cmd.Stderr = &out, &out
		log.Info("mmdebstrap", "suite", s.Suite, "variant", s.Variant, "packages", len(s.Packages))
		built <- cmd.Run()
	}()
	var err error
	select {
	case err = <-resolved:
		if err != nil {
			cancel()
			<-built
			return err
		}
		err = <-built
	case err = <-built:
		cancel()
		<-resolved
	}
	if err != nil {
		if perr := c.packageError(out.String()); perr != nil {
			return perr
		}
		return fmt.Errorf("appliance %s: mmdebstrap: %v\n%s", c.Profile.Appliance, err, tailLines(out.String(), 30))
	}
	return nil
}

// MmdebstrapCommand is the command Build runs for a Debian profile's
// base tree (for benchmarks: the same mmdebstrap, alone). It runs in a
// private mount namespace (unshare -m), so whatever mmdebstrap mounts in
// the tree goes away with it, even when it is killed; a cancelled
// context kills its whole process group.
func (c Config) MmdebstrapCommand(ctx context.Context, tree string) (*exec.Cmd, error) {
	c.defaults()
	if err := c.check(); err != nil {
		return nil, err
	}
	s, err := c.baseSpec(ctx)
	if err != nil {
		return nil, err
	}
	return c.mmdebstrap(ctx, s, tree)
}

func (c *Config) mmdebstrap(ctx context.Context, s baseSpec, tree string) (*exec.Cmd, error) {
	debs := filepath.Join(c.CacheDir, "debs")
	tmp := filepath.Join(c.CacheDir, "tmp")
	for _, d := range []string{debs, tmp} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("appliance base: %w", err)
		}
	}
	q := shellQuote(debs)
	// Seed apt's archive directory from the cache and keep what was
	// downloaded (hard links: same filesystem, no copies).
	args := []string{"--mount", "--propagation", "private", "--", "mmdebstrap",
		"--mode=root", "--variant=" + s.Variant, "--arch=" + s.Arch, "--components=main",
		"--aptopt=Acquire::Languages \"none\"",
		"--dpkgopt=path-exclude=/usr/share/doc/*", "--dpkgopt=path-include=/usr/share/doc/*/copyright",
		"--dpkgopt=path-exclude=/usr/share/man/*", "--dpkgopt=path-exclude=/usr/share/info/*",
		"--dpkgopt=path-exclude=/usr/share/locale/*", "--dpkgopt=path-include=/usr/share/locale/locale.alias",
		"--skip=essential/unlink",
		"--setup-hook=mkdir -p \"$1\"/var/cache/apt/archives && find " + q + " -maxdepth 1 -name '*.deb' -exec cp -l {} \"$1\"/var/cache/apt/archives/ \\;",
		"--customize-hook=find \"$1\"/var/cache/apt/archives -maxdepth 1 -name '*.deb' -exec cp -ln {} " + q + "/ \\;",
	}
	if len(s.Packages) > 0 {
		args = append(args, "--include="+strings.Join(s.Packages, ","))
	}
	args = append(args, s.Suite, tree, s.sources())
	cmd := exec.CommandContext(ctx, "unshare", args...)
	cmd.Env = append(os.Environ(), "SOURCE_DATE_EPOCH="+strconv.FormatInt(s.Epoch, 10), "LC_ALL=C.UTF-8", "TMPDIR="+tmp)
	killGroup(cmd)
	return cmd, nil
}

// killGroup makes cmd the leader of a process group that a cancelled
// context kills as a whole (apt and dpkg under mmdebstrap, children of a
// post script), and waits for its output pipes no longer than a few
// seconds after that.
func killGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
}

// resolve asks a private apt whether the archive has every package and
// can install them together.
func (c *Config) resolve(ctx context.Context, s baseSpec, log *slog.Logger) error {
	if len(s.Packages) == 0 {
		return nil
	}
	dir := filepath.Join(c.CacheDir, "apt")
	for _, d := range []string{"lists/partial", "cache/archives/partial", "etc/apt.conf.d", "etc/preferences.d"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return fmt.Errorf("appliance resolve: %w", err)
		}
	}
	sum := sha256.Sum256([]byte(s.sources()))
	src := filepath.Join(dir, "sources-"+hex.EncodeToString(sum[:6])+".list")
	if err := os.WriteFile(src, []byte(s.sources()), 0o644); err != nil {
		return err
	}
	status := filepath.Join(dir, "status")
	if err := os.WriteFile(status, nil, 0o644); err != nil {
		return err
	}
	opts := []string{
		"-o", "Dir::State=" + dir, "-o", "Dir::State::Lists=" + filepath.Join(dir, "lists"),
		"-o", "Dir::State::status=" + status, "-o", "Dir::Cache=" + filepath.Join(dir, "cache"),
		"-o", "Dir::Etc::SourceList=" + src, "-o", "Dir::Etc::SourceParts=/dev/null",
		"-o", "Dir::Etc::Parts=" + filepath.Join(dir, "etc/apt.conf.d"),
		"-o", "Dir::Etc::Preferences=/dev/null", "-o", "Dir::Etc::PreferencesParts=" + filepath.Join(dir, "etc/preferences.d"),
		"-o", "APT::Architecture=" + s.Arch, "-o", "APT::Architectures=" + s.Arch, "-o", "Acquire::Languages=none",
		"-o", "Debug::NoLocking=1", "-o", "APT::Install-Recommends=false", "-o", "APT::Sandbox::User=root",
	}
	unlock, err := filelock.Lock(filepath.Join(dir, ".lock"))
	if err != nil {
		return err
	}
	defer unlock()
	run := func(args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, "apt-get", append(opts, args...)...)
		cmd.Env = append(os.Environ(), "LC_ALL=C.UTF-8")
		b, err := cmd.CombinedOutput()
		return string(b), err
	}
	// Lists younger than an hour answer "does Debian have it" well
	// enough; mmdebstrap fetches its own for the install.
	stamp := filepath.Join(dir, "updated-"+hex.EncodeToString(sum[:6]))
	if st, err := os.Stat(stamp); err != nil || time.Since(st.ModTime()) > time.Hour {
		if out, err := run("update"); err != nil {
			return fmt.Errorf("appliance %s: apt-get update (%s): %v\n%s", c.Profile.Appliance, strings.TrimSpace(s.sources()), err, tailLines(out, 20))
		}
		if err := os.WriteFile(stamp, nil, 0o644); err != nil {
			return fmt.Errorf("appliance resolve: %w", err)
		}
	}
	out, err := run(append([]string{"install", "--simulate", "--no-install-recommends"}, s.Packages...)...)
	if err != nil {
		if perr := c.packageError(out); perr != nil {
			return perr
		}
		return fmt.Errorf("appliance %s: apt cannot install the package set: %v\n%s", c.Profile.Appliance, err, tailLines(out, 30))
	}
	log.Info("packages resolved", "requested", len(s.Packages), "install", strings.Count(out, "\nInst "))
	return nil
}

// packageError finds the first profile package apt complains about.
func (c *Config) packageError(out string) error {
	lines := strings.Split(out, "\n")
	for _, p := range c.Profile.Packages {
		var msgs []string
		for _, l := range lines {
			l = strings.TrimSpace(l)
			if !strings.HasPrefix(l, "E: ") && !strings.Contains(l, " but ") && !strings.HasPrefix(l, "Package ") {
				continue
			}
			if containsWord(l, p.Name) {
				msgs = append(msgs, l)
			}
		}
		if len(msgs) > 0 {
			return &PackageError{Package: p, Apt: strings.Join(msgs, "; ")}
		}
	}
	return nil
}

// containsWord reports whether l names pkg as a whole package name.
func containsWord(l, pkg string) bool {
	for i := 0; ; {
		j := strings.Index(l[i:], pkg)
		if j < 0 {
			return false
		}
		j += i
		before := j == 0 || !isPkgChar(l[j-1])
		end := j + len(pkg)
		after := end == len(l) || !isPkgChar(l[end])
		if before && after {
			return true
		}
		i = j + 1
	}
}

func isPkgChar(b byte) bool {
	return b >= 'a' && b <= 'z' || b >= '0' && b <= '9' || b == '+' || b == '-' || b == '.'
}

func tailLines(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// kernel is an unpacked kernel package.
type kernel struct{ version, vmlinuz, modules string }

func findKernel(root string) (*kernel, error) {
	vms, _ := filepath.Glob(filepath.Join(root, "boot", "vmlinuz-*"))
	if len(vms) == 0 {
		return nil, fmt.Errorf("appliance: no boot/vmlinuz-* under kernel %q", root)
	}
	vm := newest(vms)
	v := strings.TrimPrefix(filepath.Base(vm), "vmlinuz-")
	k := &kernel{version: v, vmlinuz: vm, modules: filepath.Join(root, "lib", "modules", v)}
	if _, err := os.Stat(filepath.Join(k.modules, "modules.dep")); err != nil {
		return nil, fmt.Errorf("appliance: kernel %s: %w (run depmod -b)", v, err)
	}
	return k, nil
}

// labInit is the busybox base's initramfs /init: load the disk drivers,
// find the root filesystem named by root=UUID=... and switch to it.
const labInit = `#!/bin/sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in $(cat /lib/modules/*/modules.load-order); do insmod $m 2>/dev/null; done
root=$(sed -n 's/.*root=\([^ ]*\).*/\1/p' /proc/cmdline)
dev=
for i in $(seq 1 40); do
	case $root in
	UUID=*|LABEL=*) dev=$(findfs $root 2>/dev/null) ;;
	*) dev=$root ;;
	esac
	[ -n "$dev" ] && [ -b "$dev" ] && break
	sleep 0.25
done
mkdir -p /newroot
mount -t ext4 -o ro "$dev" /newroot || { echo "ironbark lab initrd: cannot mount root $root"; poweroff -f; }
exec switch_root /newroot /sbin/init
`

// busyboxBase lays out the lab's tree: busybox and its applet links, the
// kernel and an initramfs that mounts the root by UUID.
func (c *Config) busyboxBase(ctx context.Context, tree string) error {
	k, err := findKernel(c.Kernel)
	if err != nil {
		return err
	}
	for _, d := range []string{"bin", "sbin", "usr/bin", "usr/sbin", "etc/init.d", "proc", "sys", "dev", "tmp", "root", "boot/grub", "run", "var/log"} {
		if err := os.MkdirAll(filepath.Join(tree, d), 0o755); err != nil {
			return fmt.Errorf("appliance lab base: %w", err)
		}
	}
	if err := os.Chmod(filepath.Join(tree, "tmp"), 0o1777); err != nil {
		return err
	}
	if err := copyFile(c.Busybox, filepath.Join(tree, "bin/busybox"), 0o755); err != nil {
		return err
	}
	list, err := exec.CommandContext(ctx, c.Busybox, "--list-full").Output()
	if err != nil {
		return fmt.Errorf("appliance lab base: busybox --list-full: %w", err)
	}
	for _, a := range strings.Fields(string(list)) {
		if a == "bin/busybox" {
			continue
		}
		rel, err := filepath.Rel(filepath.Dir(a), "bin/busybox")
		if err != nil {
			return err
		}
		if err := os.Symlink(rel, filepath.Join(tree, a)); err != nil && !os.IsExist(err) {
			return fmt.Errorf("appliance lab base: %w", err)
		}
	}
	if err := copyFile(k.vmlinuz, filepath.Join(tree, "boot", "vmlinuz-"+k.version), 0o644); err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(tree, "boot", "initrd.img-"+k.version))
	if err != nil {
		return err
	}
	_, err = initramfs.Build(f, initramfs.Spec{
		Files: []initramfs.File{
			{Path: "init", Mode: 0o755, Data: []byte(labInit)},
			{Path: "bin/busybox", Mode: 0o755, Source: c.Busybox},
			initramfs.Symlink("bin/sh", "busybox"),
			initramfs.Dir("proc", 0o555), initramfs.Dir("sys", 0o555),
		},
		Modules:    []string{"virtio_pci", "virtio_blk"},
		ModulesDir: k.modules,
	})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("appliance lab base: initramfs: %w", err)
	}
	for p, data := range map[string]string{
		"etc/passwd":     "root:x:0:0:root:/root:/bin/sh\n",
		"etc/group":      "root:x:0:\n",
		"etc/os-release": "NAME=\"ironbark lab\"\nID=ironbark-lab\n",
	} {
		if err := os.WriteFile(filepath.Join(tree, p), []byte(data), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s: %w", src, err)
	}
	return out.Close()
}
