package installer

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/filesystem"
)

// BootEntry is what the installed disk's boot loader would start: files
// on its first (FAT) partition and the kernel command line.
type BootEntry struct {
	Kernel  string // absolute path on the boot partition, e.g. /vmlinuz
	Initrd  string // "" when the entry has none
	Cmdline string
}

// ErrNoBootEntry means the disk has no syslinux entry to start (a GRUB
// disk, such as a Xen node's, which only a reboot starts).
var ErrNoBootEntry = errors.New("no syslinux boot entry on the boot partition")

// syslinuxConfigs are where syslinux looks for its configuration, BIOS
// first (the installer starts what a BIOS boot would; the UEFI copy our
// images carry is the same entry).
var syslinuxConfigs = []string{"/syslinux.cfg", "/syslinux/syslinux.cfg", "/boot/syslinux/syslinux.cfg", "/EFI/BOOT/syslinux.cfg"}

// FindBootEntry reads the default entry of the syslinux configuration on
// disk's first partition.
func FindBootEntry(disk string) (BootEntry, error) {
	d, err := diskfs.Open(disk, diskfs.WithOpenMode(diskfs.ReadOnly))
	if err != nil {
		return BootEntry{}, fmt.Errorf("open %s: %w", disk, err)
	}
	defer d.Close()
	fs, err := d.GetFilesystem(1)
	if err != nil {
		return BootEntry{}, fmt.Errorf("boot partition of %s: %w", disk, err)
	}
	for _, cfg := range syslinuxConfigs {
		f, err := fs.OpenFile(cfg, os.O_RDONLY)
		if err != nil {
			continue
		}
		data, err := io.ReadAll(io.LimitReader(f, 1<<20))
		f.Close()
		if err != nil {
			return BootEntry{}, fmt.Errorf("read %s on %s: %w", cfg, disk, err)
		}
		e, err := ParseSyslinux(string(data), path.Dir(cfg))
		if err != nil {
			return BootEntry{}, fmt.Errorf("%s on %s: %w", cfg, disk, err)
		}
		for _, p := range []string{e.Kernel, e.Initrd} {
			if p == "" {
				continue
			}
			if _, err := statFile(fs, p); err != nil {
				return BootEntry{}, fmt.Errorf("%s on %s names %s: %w", cfg, disk, p, err)
			}
		}
		return e, nil
	}
	return BootEntry{}, ErrNoBootEntry
}

func statFile(fs filesystem.FileSystem, p string) (int64, error) {
	f, err := fs.OpenFile(p, os.O_RDONLY)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return f.Seek(0, io.SeekEnd)
}

// ParseSyslinux returns the default entry of a syslinux configuration
// (the DEFAULT label, else the first LABEL); dir is the configuration's
// directory, against which relative paths resolve. Only what a kexec
// needs is read: LINUX/KERNEL, INITRD (the first of a list) and APPEND;
// an initrd= in APPEND stands for INITRD, as syslinux takes it.
func ParseSyslinux(cfg, dir string) (BootEntry, error) {
	type label struct{ kernel, initrd, appendArgs string }
	var (
		def    string
		labels = map[string]*label{}
		order  []string
		cur    *label
	)
	sc := bufio.NewScanner(strings.NewReader(cfg))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		key := strings.Fields(line)[0]
		val := strings.TrimSpace(line[len(key):])
		switch strings.ToUpper(key) {
		case "DEFAULT":
			def = val
		case "LABEL":
			cur = &label{}
			if _, dup := labels[val]; !dup {
				labels[val] = cur
				order = append(order, val)
			}
		case "LINUX", "KERNEL":
			if cur != nil {
				cur.kernel = val
			}
		case "INITRD":
			if cur != nil {
				cur.initrd = val
			}
		case "APPEND":
			if cur != nil {
				cur.appendArgs = val
			}
		}
	}
	if len(order) == 0 {
		return BootEntry{}, ErrNoBootEntry
	}
	name := order[0]
	if def != "" {
		if _, ok := labels[def]; !ok {
			return BootEntry{}, fmt.Errorf("DEFAULT %q is not a LABEL", def)
		}
		name = def
	}
	l := labels[name]
	if l.kernel == "" {
		return BootEntry{}, fmt.Errorf("label %q has no LINUX or KERNEL", name)
	}
	if l.appendArgs == "-" { // syslinux: no arguments
		l.appendArgs = ""
	}
	var args []string
	initrd := l.initrd
	for _, a := range strings.Fields(l.appendArgs) {
		if v, ok := strings.CutPrefix(a, "initrd="); ok {
			if initrd == "" {
				initrd = v
			}
			continue
		}
		args = append(args, a)
	}
	initrd, _, _ = strings.Cut(initrd, ",")
	abs := func(p string) string {
		if p == "" {
			return ""
		}
		if !strings.HasPrefix(p, "/") {
			p = path.Join(dir, p)
		}
		return path.Clean(p)
	}
	return BootEntry{Kernel: abs(l.kernel), Initrd: abs(initrd), Cmdline: strings.Join(args, " ")}, nil
}
