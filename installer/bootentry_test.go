package installer_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"ironbark/images/disk"
	"ironbark/installer"
	"ironbark/internal/lab"
)

func TestParseSyslinux(t *testing.T) {
	for _, tc := range []struct {
		name, cfg, dir string
		want           installer.BootEntry
	}{
		{"ironbark image", "SERIAL 0 115200\nDEFAULT linux\nPROMPT 0\nTIMEOUT 0\n\nLABEL linux\n  LINUX /vmlinuz\n  INITRD /initrd.img\n  APPEND console=ttyS0 root=PARTUUID=1234-02\n", "/",
			installer.BootEntry{Kernel: "/vmlinuz", Initrd: "/initrd.img", Cmdline: "console=ttyS0 root=PARTUUID=1234-02"}},
		{"DEFAULT picks the label; KERNEL, initrd= in APPEND, relative paths", "default two\nlabel one\n kernel a\nlabel two\n\tkernel\tboot/vmlinuz-6.1\n\tappend initrd=boot/initrd.img,extra.img quiet\n", "/syslinux",
			installer.BootEntry{Kernel: "/syslinux/boot/vmlinuz-6.1", Initrd: "/syslinux/boot/initrd.img", Cmdline: "quiet"}},
		{"no DEFAULT: the first label; APPEND -", "# comment\nLABEL first\nLINUX /k\nAPPEND -\nLABEL second\nLINUX /other\n", "/",
			installer.BootEntry{Kernel: "/k"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := installer.ParseSyslinux(tc.cfg, tc.dir)
			if err != nil || got != tc.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
	for _, bad := range []string{"", "SERIAL 0\n", "DEFAULT nope\nLABEL x\nLINUX /k\n", "LABEL x\nAPPEND quiet\n"} {
		if e, err := installer.ParseSyslinux(bad, "/"); err == nil {
			t.Errorf("%q: accepted as %+v", bad, e)
		}
	}
	if _, err := installer.ParseSyslinux("PROMPT 0\n", "/"); !errors.Is(err, installer.ErrNoBootEntry) {
		t.Errorf("no label: %v, want ErrNoBootEntry", err)
	}
}

// TestFindBootEntry reads back, from a disk the project's image builder
// made bootable with syslinux, the entry a kexec starts: the kernel and
// initramfs it carries and the command line syslinux would
// pass, with the root partition's PARTUUID. A disk without syslinux (a
// GRUB/Xen disk) has none: the installer reboots it.
func TestFindBootEntry(t *testing.T) {
	lab.Require(t, "syslinux")
	if _, err := disk.DebianSyslinux(); err != nil {
		lab.Missing(t, err.Error())
	}
	dir := t.TempDir()
	kernel, initrd := filepath.Join(dir, "vmlinuz"), filepath.Join(dir, "initrd.img")
	kdata, idata := bytes.Repeat([]byte("kernel "), 50000), bytes.Repeat([]byte("initrd "), 120000)
	for p, d := range map[string][]byte{kernel: kdata, initrd: idata} {
		if err := os.WriteFile(p, d, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	root := filepath.Join(dir, "root")
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, table := range []disk.Table{disk.MBR, disk.GPT} {
		img := filepath.Join(dir, string(table)+".img")
		res, err := disk.BuildDisk(context.Background(), img, disk.DiskSpec{Table: table, Root: disk.DirSource(root),
			Boot: &disk.Boot{Kernel: kernel, Initrd: initrd, Cmdline: "console=ttyS0 quiet"}})
		if err != nil {
			t.Fatal(err)
		}
		e, err := installer.FindBootEntry(img)
		if err != nil {
			t.Fatalf("%s: %v", table, err)
		}
		want := installer.BootEntry{Kernel: "/vmlinuz", Initrd: "/initrd.img", Cmdline: "console=ttyS0 quiet root=PARTUUID=" + res.RootPartUUID}
		if e != want {
			t.Fatalf("%s: %+v, want %+v", table, e, want)
		}
	}

	// No boot loader of its own on partition 1: an ESP holding only the
	// identity, as a GRUB disk's.
	img := filepath.Join(dir, "grubless.img")
	if _, err := disk.BuildDisk(context.Background(), img, disk.DiskSpec{Table: disk.GPT, ESPSize: 64 << 20, Root: disk.DirSource(root)}); err != nil {
		t.Fatal(err)
	}
	if _, err := installer.FindBootEntry(img); err == nil || !strings.Contains(err.Error(), "boot partition") && !errors.Is(err, installer.ErrNoBootEntry) {
		t.Fatalf("a disk without syslinux: %v, want no boot entry", err)
	}
}
