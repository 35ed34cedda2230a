package appliance

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"

	"ironbark/images/disk"
	"ironbark/roll"
)

// GrubConfigPath is where the boot entries live in the image. A profile
// that writes this file (a <file> or a post script) decides the boot
// entries itself; GRUB has already set $root to the root filesystem and
// exported ironbark_root_uuid and ironbark_root_partuuid for it (see
// disk.GRUB). Otherwise Build writes one entry for the newest kernel, or
// for Xen when the tree has /boot/xen-*.gz.
const GrubConfigPath = "/boot/grub/grub.cfg"

// Attributes of the profile that shape a generated boot entry.
const (
	AttrKernelArgs = "kernel_args"    // kernel (or dom0) arguments; default DefaultKernelArgs (DefaultDom0Args under Xen)
	AttrXenArgs    = "xen_args"       // Xen's arguments; default DefaultXenArgs with the two below
	AttrDom0Mem    = "xen_dom0_mem"   // dom0 memory; default 1024M
	AttrDom0VCPUs  = "xen_dom0_vcpus" // dom0 vCPUs; default 2
)

// Defaults of a generated boot entry.
const (
	DefaultKernelArgs = "console=tty0 console=ttyS0,115200 ro net.ifnames=0"
	DefaultDom0Args   = "console=hvc0 console=tty0 ro net.ifnames=0"
	DefaultXenArgs    = "dom0_mem=%[1]s,max:%[1]s dom0_max_vcpus=%[2]s console=com1,vga com1=115200"
)

// bootConfig leaves a grub.cfg the profile made alone and otherwise
// writes one.
func bootConfig(tree string, p *roll.Profile) (string, error) {
	r, err := os.OpenRoot(tree)
	if err != nil {
		return "", fmt.Errorf("boot config: %w", err)
	}
	defer r.Close()
	cfg := strings.TrimPrefix(GrubConfigPath, "/")
	if _, err := r.Lstat(cfg); err == nil {
		return "profile", nil
	}
	text, err := generateGrubConfig(tree, p)
	if err != nil {
		return "", err
	}
	if err := r.MkdirAll(path.Dir(cfg), 0o755); err != nil {
		return "", fmt.Errorf("boot config: %w", err)
	}
	return "generated", r.WriteFile(cfg, []byte(text), 0o644)
}

func generateGrubConfig(tree string, p *roll.Profile) (string, error) {
	boot := filepath.Join(tree, "boot")
	kernels, _ := filepath.Glob(filepath.Join(boot, "vmlinuz-*"))
	if len(kernels) == 0 {
		return "", fmt.Errorf("appliance %s: no kernel in /boot (add a linux-image package) and no %s from the profile", p.Appliance, GrubConfigPath)
	}
	v := strings.TrimPrefix(filepath.Base(newest(kernels)), "vmlinuz-")
	initrd := ""
	if _, err := os.Stat(filepath.Join(boot, "initrd.img-"+v)); err == nil {
		initrd = "/boot/initrd.img-" + v
	}
	attr := func(k, def string) string {
		if v, ok := p.Attrs[k]; ok && v != "" {
			return v
		}
		return def
	}
	xens, _ := filepath.Glob(filepath.Join(boot, "xen-*.gz"))
	var b strings.Builder
	fmt.Fprintf(&b, "# written by ironbark appliance build for %s\nset timeout=0\nset default=0\n\n", p.Appliance)
	root := "root=UUID=${ironbark_root_uuid}"
	if len(xens) > 0 {
		xenArgs := attr(AttrXenArgs, fmt.Sprintf(DefaultXenArgs, attr(AttrDom0Mem, "1024M"), attr(AttrDom0VCPUs, "2")))
		xen := "/boot/" + filepath.Base(newest(xens))
		fmt.Fprintf(&b, "menuentry 'ironbark %s (Xen, Linux %s)' {\n", p.Appliance, v)
		fmt.Fprintf(&b, "\tmultiboot2 %s %s\n", xen, xenArgs)
		fmt.Fprintf(&b, "\tmodule2 /boot/vmlinuz-%s %s %s\n", v, root, attr(AttrKernelArgs, DefaultDom0Args))
		if initrd != "" {
			fmt.Fprintf(&b, "\tmodule2 %s\n", initrd)
		}
		b.WriteString("}\n")
		return b.String(), nil
	}
	fmt.Fprintf(&b, "menuentry 'ironbark %s (Linux %s)' {\n", p.Appliance, v)
	fmt.Fprintf(&b, "\tlinux /boot/vmlinuz-%s %s %s\n", v, root, attr(AttrKernelArgs, DefaultKernelArgs))
	if initrd != "" {
		fmt.Fprintf(&b, "\tinitrd %s\n", initrd)
	}
	b.WriteString("}\n")
	return b.String(), nil
}

// newest returns the name with the highest version, comparing runs of
// digits as numbers ("6.1.0-10" after "6.1.0-9").
func newest(names []string) string {
	best := ""
	for _, n := range names {
		if best == "" || versionLess(best, n) {
			best = n
		}
	}
	return best
}

func versionLess(a, b string) bool {
	for a != "" && b != "" {
		da, db := digitRun(a), digitRun(b)
		if da > 0 && db > 0 {
			na, nb := strings.TrimLeft(a[:da], "0"), strings.TrimLeft(b[:db], "0")
			if len(na) != len(nb) {
				return len(na) < len(nb)
			}
			if na != nb {
				return na < nb
			}
			a, b = a[da:], b[db:]
			continue
		}
		if a[0] != b[0] {
			return a[0] < b[0]
		}
		a, b = a[1:], b[1:]
	}
	return len(a) < len(b)
}

func digitRun(s string) int {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	return i
}

// writeFstab adds the disk's own filesystems to the tree's /etc/fstab
// unless the profile mounts something there already: the root by its
// UUID, and the ESP (partition 1, where the installer writes the node's
// identity, ironbark/node.json) on /boot/efi.
func writeFstab(tree string, ids disk.DiskIDs) error {
	r, err := os.OpenRoot(tree)
	if err != nil {
		return fmt.Errorf("fstab: %w", err)
	}
	defer r.Close()
	const p = "etc/fstab"
	old, err := r.ReadFile(p)
	if err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("fstab: %w", err)
	}
	mounted := map[string]bool{}
	for _, l := range strings.Split(string(old), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && !strings.HasPrefix(f[0], "#") {
			mounted[f[1]] = true
		}
	}
	var add strings.Builder
	if !mounted["/"] {
		// x-systemd.growfs: the installer grows the root partition to
		// the disk; systemd grows the filesystem to it at boot.
		fmt.Fprintf(&add, "UUID=%s / ext4 defaults,errors=remount-ro,x-systemd.growfs 0 1\n", ids.RootFSUUID)
	}
	if !mounted[ESPMount] {
		// nofail: boot does not wait for it; a long device timeout: it
		// is still mounted when udev's coldplug is slow (systemd's 90 s
		// default ran out under qemu TCG on busy cores, and the agent
		// found no identity at first boot).
		fmt.Fprintf(&add, "PARTUUID=%s %s vfat umask=0077,nofail,x-systemd.device-timeout=10min 0 2\n", ids.ESPPartUUID, ESPMount)
	}
	if add.Len() == 0 {
		return nil
	}
	if err := r.MkdirAll(strings.TrimPrefix(ESPMount, "/"), 0o700); err != nil {
		return fmt.Errorf("fstab: %w", err)
	}
	if err := r.MkdirAll("etc", 0o755); err != nil {
		return fmt.Errorf("fstab: %w", err)
	}
	text := string(old)
	if text != "" && !strings.HasSuffix(text, "\n") {
		text += "\n"
	}
	return r.WriteFile(p, []byte(text+"# the appliance disk (ironbark appliance build)\n"+add.String()), 0o644)
}

// ESPMount is where the installed system mounts its ESP.
const ESPMount = "/boot/efi"
