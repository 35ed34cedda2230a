package nodeagent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"ironbark/internal/nodeapi"
	"ironbark/nodeagent/imagecache"
)

// errXenStart marks a Xen domain that libxl failed to create. A busy dom0
// is the usual cause (libxl kills a disk or vif hotplug script that has
// not finished in 40 s), and a second try finds the scripts' files in
// the page cache: it is retried like an unreachable hypervisor.
var errXenStart = errors.New("xen domain start failed")

// launch makes one instance: images into the cache, disks, console file,
// domain defined and started. The domain definition is the commit point:
// a launch cut short before it leaves only a directory that the next
// attempt (or a restarted agent) removes first.
func (a *Agent) launch(ctx context.Context, s nodeapi.InstanceSpec) error {
	bridge := a.cfg.Bridge
	if bridge != "" {
		// MANAGED mode: the VLAN's bridge, made before the domain needs it.
		var err error
		if bridge, err = a.instanceBridge(s); err != nil {
			return err
		}
	}
	dir := a.instDir(s.InstanceID)
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := a.ownInstanceDir(dir); err != nil {
		return err
	}
	// The three downloads (cold cache) run side by side.
	arts := []struct {
		what string
		art  *nodeapi.Artifact
		path string
		err  error
	}{{what: "image", art: &s.Image}, {what: "kernel", art: s.Kernel}, {what: "ramdisk", art: s.Ramdisk}}
	var wg sync.WaitGroup
	for i := range arts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			arts[i].path, arts[i].err = a.fetch(ctx, arts[i].what, arts[i].art)
		}()
	}
	wg.Wait()
	for _, f := range arts {
		if f.err != nil {
			return f.err
		}
	}
	image, kernel, ramdisk := arts[0].path, arts[1].path, arts[2].path
	plan := domainPlan{
		Type: a.dtype, Node: a.id.NodeID, Spec: s, Kernel: kernel, Initrd: ramdisk, Bridge: bridge,
		Root: filepath.Join(dir, "root.qcow2"),
	}
	format := s.Image.Format
	if format == "" {
		format = "raw"
	}
	if format != "raw" && format != "qcow2" {
		return fmt.Errorf("image %s: format %q: want raw or qcow2", s.Image.ID, format)
	}
	if err := a.makeDisks(ctx, &plan, dir, image, format); err != nil {
		return err
	}
	if a.dtype == "xen" {
		// xenconsoled appends to guest-ID.log: a file left by an
		// earlier attempt would be read as this boot's console.
		if err := os.Remove(a.consolePath(s.InstanceID)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	} else {
		plan.Console = filepath.Join(dir, "console.log")
		if err := os.WriteFile(plan.Console, nil, 0o600); err != nil {
			return err
		}
	}
	// qemu-img made the disks with the umask's mode.
	for _, f := range []string{plan.Root, plan.Ephemeral} {
		if f == "" {
			continue
		}
		if err := os.Chmod(f, 0o600); err != nil {
			return err
		}
	}
	xml, err := plan.DomainXML()
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := a.hv.define(xml); err != nil {
		return fmt.Errorf("define domain: %w", err)
	}
	if err := a.hv.start(s.InstanceID); err != nil {
		if !errors.Is(err, errHypervisor) {
			_ = a.hv.remove(s.InstanceID)
		}
		if a.dtype == "xen" && !errors.Is(err, errHypervisor) {
			err = fmt.Errorf("%w: %w%s", errXenStart, err, libxlErrors(filepath.Join(a.cfg.LibxlLogDir, s.InstanceID+".log")))
		}
		return fmt.Errorf("start domain: %w", err)
	}
	return nil
}

// makeDisks makes the instance's root (and ephemeral) disk in dir from the
// cached image, which is only ever read. Under qemu/KVM they are qcow2
// overlays on it. Under Xen they are raw files (the root a sparse copy):
// dom0's block backend serves raw files through loop devices, whereas a
// qcow2 disk needs a qemu device model per guest.
func (a *Agent) makeDisks(ctx context.Context, plan *domainPlan, dir, image, format string) error {
	xen := a.dtype == "xen"
	var ephErr error
	var wg sync.WaitGroup
	if s := plan.Spec; s.VMType.DiskGiB > 0 {
		plan.Ephemeral = filepath.Join(dir, "ephemeral.qcow2")
		if xen {
			plan.Ephemeral = filepath.Join(dir, "ephemeral.img")
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if xen {
				ephErr = sparseFile(plan.Ephemeral, int64(s.VMType.DiskGiB)<<30)
				return
			}
			ephErr = a.qemuImg(ctx, "create", "-q", "-f", "qcow2", plan.Ephemeral, fmt.Sprintf("%dG", s.VMType.DiskGiB))
		}()
	}
	var rootErr error
	if xen {
		plan.Root = filepath.Join(dir, "root.img")
		rootErr = a.qemuImg(ctx, "convert", "-q", "-f", format, "-O", "raw", image, plan.Root)
	} else {
		rootErr = a.qemuImg(ctx, "create", "-q", "-f", "qcow2", "-F", format, "-b", image, plan.Root)
	}
	wg.Wait()
	return errors.Join(rootErr, ephErr)
}

// sparseFile makes an empty raw disk of size bytes that takes no space
// until written.
func sparseFile(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return fmt.Errorf("ephemeral disk: %w", err)
	}
	return f.Close()
}

func (a *Agent) fetch(ctx context.Context, what string, art *nodeapi.Artifact) (string, error) {
	if art == nil {
		return "", nil
	}
	url := art.URL
	if strings.HasPrefix(url, "/") {
		url = a.client.Base() + url // served by the controller's node listener
	}
	p, err := a.cache.Get(ctx, imagecache.Blob{Digest: art.Digest, Size: art.Size, URL: url})
	if err != nil {
		return "", fmt.Errorf("%s %s: %w", what, art.ID, err)
	}
	return p, nil
}

func (a *Agent) qemuImg(ctx context.Context, args ...string) error {
	out, err := exec.CommandContext(ctx, a.cfg.QemuImg, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("qemu-img %s: %v: %s", args[0], err, strings.TrimSpace(string(out)))
	}
	return nil
}

// isTransientFetch reports whether a launch error is a download that may
// work later (network, controller restart), as opposed to a corrupt image.
func isTransientFetch(err error) bool {
	if errors.Is(err, imagecache.ErrCorrupt) || imagecache.IsNoSpace(err) {
		return false
	}
	var se interface{ Timeout() bool }
	return errors.As(err, &se) || strings.Contains(err.Error(), "connection refused") ||
		strings.Contains(err.Error(), "connection reset") || strings.Contains(err.Error(), "EOF")
}

// qemuUser is the user libvirt's qemu driver runs guests as (Debian's
// qemu.conf default).
const qemuUser = "libvirt-qemu"

// ownInstanceDir makes an instance directory 0700 and, on a qemu:// node,
// qemu's: it reaches the disks libvirt labels for it, nobody else lists
// them. Xen's device model runs as root and keeps root's.
func (a *Agent) ownInstanceDir(dir string) error {
	if err := os.Chmod(dir, 0o700); err != nil {
		return err
	}
	if !strings.HasPrefix(a.cfg.LibvirtURI, "qemu") {
		return nil
	}
	u, err := user.Lookup(qemuUser)
	if err != nil {
		return nil // no such user: qemu runs as someone else (or root)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chown(dir, uid, gid); err != nil {
		return fmt.Errorf("give %s to %s: %w", dir, qemuUser, err)
	}
	return nil
}

// libxlErrors is what libvirt's libxl driver logged as errors for a
// domain (its per-domain log; its last lines when none says error):
// libvirt's own message only says that libxenlight failed, the log says
// which device or script. It is "" without a log.
func libxlErrors(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	var errs []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, "error") || strings.Contains(l, "timed out") || strings.Contains(l, "failed") {
			errs = append(errs, strings.TrimSpace(l))
		}
	}
	if len(errs) == 0 {
		// No line says so: the log's end is the best account.
		for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			if l = strings.TrimSpace(l); l != "" {
				errs = append(errs, l)
			}
		}
	}
	errs = errs[max(0, len(errs)-4):]
	if len(errs) == 0 {
		return ""
	}
	return " (libxl: " + strings.Join(errs, " | ") + ")"
}
