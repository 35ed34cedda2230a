package provision

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"ironbark/images/disk"
	"ironbark/images/initramfs"
	"ironbark/internal/lab"
)

// installedInit is /init of the installed appliance: it reads the host
// name the installer wrote into the image's first (FAT) partition, prints
// the marker and powers off.
const installedInit = `#!/bin/sh
bb=/bin/busybox
$bb mount -t devtmpfs devtmpfs /dev
for m in $($bb cat /lib/modules/*/modules.load-order); do $bb insmod /$m; done
i=0; while [ ! -b /dev/vda1 ] && [ $i -lt 100 ]; do $bb sleep 0.1; i=$((i+1)); done
$bb mkdir -p /mnt
$bb mount -t vfat -o ro /dev/vda1 /mnt
echo "` + installedMarker + `$($bb cat /mnt/ironbark/hostname)"
$bb poweroff -f
`

const floorInit = `#!/bin/sh
echo ` + floorMarker + `
/bin/busybox poweroff -f
`

// busyboxInitramfs writes a gzip initramfs with busybox, init and the
// named kernel modules (with their dependencies) to dir/name.
func busyboxInitramfs(b *testing.B, k *lab.Kernel, dir, name, init string, modules []string) string {
	b.Helper()
	var buf bytes.Buffer
	spec := initramfs.Spec{Files: []initramfs.File{
		{Path: "init", Mode: 0o755, Data: []byte(init)},
		{Path: "bin/busybox", Mode: 0o755, Source: lab.Busybox(b)},
		initramfs.Symlink("bin/sh", "busybox"),
		initramfs.Dir("dev", 0o755),
	}}
	if len(modules) > 0 {
		spec.Modules, spec.ModulesDir = modules, k.ModulesDir()
	}
	if _, err := initramfs.Build(&buf, spec); err != nil {
		b.Fatalf("initramfs %s: %v", name, err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		b.Fatal(err)
	}
	return path
}

// floorInitramfs is the floor's initramfs: busybox printing the marker.
func floorInitramfs(b *testing.B, k *lab.Kernel, dir string) string {
	return busyboxInitramfs(b, k, dir, "floor.initrd.img", floorInit, nil)
}

// applianceImage builds the compute appliance the nodes install with the
// project's own disk builder: an MBR disk whose first partition (FAT32,
// syslinux for BIOS) holds the kernel and the marker initramfs, and a
// small ext4 root.
func applianceImage(b *testing.B, k *lab.Kernel, dir string) string {
	b.Helper()
	initrd := busyboxInitramfs(b, k, dir, "appliance.initrd.img", installedInit,
		[]string{"virtio_pci", "virtio_blk", "vfat", "nls_cp437", "nls_utf8", "nls_ascii"})
	root := filepath.Join(dir, "appliance-root")
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "etc", "ironbark-appliance"), []byte("compute\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	out := filepath.Join(dir, "compute.img")
	res, err := disk.BuildDisk(context.Background(), out, disk.DiskSpec{
		Table: disk.MBR,
		Boot:  &disk.Boot{Kernel: k.Vmlinuz, Initrd: initrd, Cmdline: "console=ttyS0 panic=-1 quiet"},
		Root:  disk.DirSource(root),
	})
	if err != nil {
		b.Fatalf("appliance image: %v", err)
	}
	b.Logf("appliance image: %d MiB", res.Size>>20)
	return out
}

// buildBinaries builds ironbark and the static node installer.
func buildBinaries(b *testing.B, dir string) (ironbark, installer string) {
	b.Helper()
	ironbark, installer = filepath.Join(dir, "ironbark"), filepath.Join(dir, "ironbark-installer")
	for out, pkg := range map[string]string{ironbark: "./cmd/ironbark", installer: "./cmd/ironbark-installer"} {
		cmd := exec.Command("go", "build", "-o", out, pkg)
		cmd.Dir = filepath.Join("..", "..") // go test runs in bench/provision
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if msg, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("go build %s: %v\n%s", pkg, err, msg)
		}
	}
	return ironbark, installer
}

// ironbarkCmd runs one ironbark command to completion.
func ironbarkCmd(b *testing.B, bin string, args ...string) {
	b.Helper()
	if out, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
		b.Fatalf("ironbark %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}
