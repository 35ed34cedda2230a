package iso_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"ironbark/images/initramfs"
	"ironbark/images/internal/qemuboot"
	"ironbark/images/iso"
	"ironbark/internal/lab"
)

// markerInitrd is a busybox initramfs whose /init prints a marker and
// powers off.
func markerInitrd(t *testing.T) string {
	bb := lab.Busybox(t)
	p := filepath.Join(t.TempDir(), "initrd.img")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	_, err = initramfs.Build(f, initramfs.Spec{Files: []initramfs.File{
		{Path: "init", Mode: 0o755, Data: []byte("#!/bin/sh\n/bin/busybox mount -t proc proc /proc\necho \"booted via $(/bin/busybox cat /proc/cmdline)\"\necho IRONBARK-ISO-$((6*7))\n/bin/busybox poweroff -f\n")},
		{Path: "bin/busybox", Mode: 0o755, Source: bb},
		initramfs.Symlink("bin/sh", "busybox"),
		initramfs.Dir("proc", 0o555),
	}})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestISO(t *testing.T) {
	lab.Require(t, "xorriso", "qemu-system-x86_64", "mdir", "grub-mkimage")
	if _, err := os.Stat(filepath.Join(iso.GrubEFIDir, "linux.mod")); err != nil {
		lab.Missing(t, "GRUB EFI modules (apt-get install grub-efi-amd64-bin): "+err.Error())
	}
	k := lab.GuestKernel(t)
	rolls := t.TempDir()
	os.MkdirAll(filepath.Join(rolls, "base/RPMS"), 0o755)
	os.WriteFile(filepath.Join(rolls, "base/roll.xml"), []byte("<roll name='base'/>\n"), 0o644)
	out := filepath.Join(t.TempDir(), "ironbark.iso")
	spec := iso.Spec{
		Kernel: k.Vmlinuz, Initrd: markerInitrd(t), Rolls: rolls,
		Cmdline: "console=ttyS0 panic=-1",
		// Two entries: both firmwares show a menu and boot the first.
		Entries: []iso.Entry{{Label: "first", Title: "The first entry", Args: "ironbark.entry=first"},
			{Label: "second", Title: "The second entry", Args: "ironbark.entry=second"}},
	}
	res, err := iso.Build(context.Background(), out, spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", res)
	// Reproducible: a build a second later is the same bytes.
	time.Sleep(1100 * time.Millisecond)
	out2 := filepath.Join(t.TempDir(), "again.iso")
	if _, err := iso.Build(context.Background(), out2, spec); err != nil {
		t.Fatal(err)
	}
	if a, b := fileSum(t, out), fileSum(t, out2); a != b {
		t.Fatalf("two builds differ: %s %s", a, b)
	}

	rep, err := exec.Command("xorriso", "-indev", out, "-report_el_torito", "plain").CombinedOutput()
	if err != nil {
		t.Fatalf("xorriso: %v\n%s", err, rep)
	}
	t.Logf("xorriso -report_el_torito plain:\n%s", rep)
	for _, want := range []string{"El Torito boot img :   1  BIOS  y   none", "El Torito boot img :   2  UEFI  y   none", "/isolinux/isolinux.bin", "/boot/efiboot.img"} {
		if !strings.Contains(string(rep), want) {
			t.Errorf("report lacks %q", want)
		}
	}
	ls, err := exec.Command("xorriso", "-indev", out, "-find", "/", "-type", "f").CombinedOutput()
	if err != nil {
		t.Fatalf("xorriso -find: %v\n%s", err, ls)
	}
	for _, want := range []string{"/rolls/base/roll.xml", "/boot/vmlinuz", "/boot/initrd.img", "/boot/grub/grub.cfg"} {
		if !strings.Contains(string(ls), want) {
			t.Errorf("ISO lacks %s:\n%s", want, ls)
		}
	}
	// The EFI partition of the hybrid MBR is a FAT that mtools reads.
	esp, err := exec.Command("mdir", "-i", out+"@@"+itoa(int64(res.EFIImageLBA)*2048), "-/", "::").CombinedOutput()
	if err != nil || !strings.Contains(string(esp), "BOOTX64") {
		t.Errorf("mdir efiboot: %v\n%s", err, esp)
	}
	if fd, err := exec.Command("sfdisk", "-l", out).CombinedOutput(); err == nil {
		t.Logf("sfdisk -l:\n%s", fd)
		if !strings.Contains(string(fd), "EFI") {
			t.Errorf("hybrid MBR has no EFI partition")
		}
	}

	const marker = "IRONBARK-ISO-42"
	for _, tc := range []struct {
		name string
		uefi bool
		args []string
	}{
		{"bios-cdrom", false, []string{"-drive", "file=" + out + ",media=cdrom,readonly=on,if=ide"}},
		{"uefi-cdrom", true, []string{"-drive", "file=" + out + ",media=cdrom,readonly=on,if=ide"}},
		{"bios-usb-disk", false, []string{"-drive", "file=" + out + ",format=raw,if=virtio,snapshot=on"}},
		{"uefi-usb-disk", true, []string{"-drive", "file=" + out + ",format=raw,if=virtio,snapshot=on"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := qemuboot.Boot(t, qemuboot.Options{Args: tc.args, UEFI: tc.uefi, Marker: marker, Timeout: 5 * time.Minute})
			if !strings.Contains(out, "ironbark.entry=first") {
				t.Errorf("the default entry did not boot:\n%s", out)
			}
			// GRUB draws its menu on the serial console.
			if tc.uefi && (!strings.Contains(out, "The first entry") || !strings.Contains(out, "The second entry")) {
				t.Errorf("UEFI: no menu with both entries on the console:\n%s", out)
			}
		})
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func fileSum(t *testing.T, p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", sha256.Sum256(b))
}
