package e2e

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/disk"
	"github.com/diskfs/go-diskfs/filesystem"
	"github.com/diskfs/go-diskfs/partition/mbr"

	"ironbark/images/initramfs"
	"ironbark/internal/lab"
)

// markerLine is what the installed image prints on its serial console,
// followed by the host name it reads from the identity the installer
// wrote into its boot partition.
const markerLine = "IRONBARK-INSTALLED-MARKER host="

// markerInit is /init of the installed image: it mounts its own boot
// partition read-only and prints the marker with the node's host name.
const markerInit = `#!/bin/sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in $(cat /lib/modules/*/modules.load-order); do insmod /$m; done
i=0; while [ ! -b /dev/vda1 ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
mkdir -p /mnt
mount -t vfat -o ro /dev/vda1 /mnt || echo "mount /dev/vda1 failed"
id=/mnt/ironbark/node.json
cluster=$(sed -n 's/.*"cluster": "\([^"]*\)".*/\1/p' $id)
token=$(grep -q '"enrollmentToken": "ibt1[.]' $id && echo ibt1 || echo none)
echo "` + markerLine + `$(cat /mnt/ironbark/hostname) boot=$([ -d /sys/firmware/efi ] && echo uefi || echo bios) cluster=$cluster token=$token"
umount /mnt
poweroff -f
`

const syslinuxCfg = `SERIAL 0 115200
DEFAULT node
PROMPT 0
TIMEOUT 0
LABEL node
  KERNEL /vmlinuz
  INITRD /initrd.img
  APPEND console=ttyS0 panic=-1 quiet
`

const (
	applianceSize = 64 << 20
	partStart     = 2048 // sectors: the partition starts at 1 MiB
)

// applianceImage builds the compute appliance's whole-disk image: an MBR
// (syslinux's boot code) with one active FAT32 partition that holds the
// kernel, the marker initramfs, syslinux for BIOS (ldlinux.sys installed
// by `syslinux --install --offset`) and syslinux.efi as the UEFI removable
// media loader \EFI\BOOT\BOOTX64.EFI.
func applianceImage(t *testing.T, k *lab.Kernel, dir string) string {
	t.Helper()
	lab.Require(t, "syslinux")
	bb := lab.Busybox(t)
	var initrd bytes.Buffer
	_, err := initramfs.Build(&initrd, initramfs.Spec{
		Files: []initramfs.File{
			{Path: "init", Mode: 0o755, Data: []byte(markerInit)},
			{Path: "bin/busybox", Mode: 0o755, Source: bb},
			initramfs.Symlink("bin/sh", "busybox"),
			initramfs.Dir("proc", 0o555), initramfs.Dir("sys", 0o555), initramfs.Dir("dev", 0o755),
			initramfs.Dir("tmp", 0o1777),
		},
		Modules:    []string{"virtio_pci", "virtio_blk", "vfat", "nls_cp437", "nls_utf8", "nls_ascii"},
		ModulesDir: k.ModulesDir(),
	})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "compute.img")
	d, err := diskfs.Create(path, applianceSize, diskfs.SectorSizeDefault)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Partition(&mbr.Table{LogicalSectorSize: 512, PhysicalSectorSize: 512, Partitions: []*mbr.Partition{
		{Index: 1, Bootable: true, Type: mbr.Fat32LBA, Start: partStart, Size: applianceSize/512 - partStart},
	}}); err != nil {
		t.Fatal(err)
	}
	fs, err := d.CreateFilesystem(disk.FilesystemSpec{Partition: 1, FSType: filesystem.TypeFat32, VolumeLabel: "IRONBARK"})
	if err != nil {
		t.Fatal(err)
	}
	for _, dirName := range []string{"/EFI", "/EFI/BOOT"} {
		if err := fs.Mkdir(dirName); err != nil {
			t.Fatal(err)
		}
	}
	files := []struct {
		path string
		data []byte
		src  string
	}{
		{path: "/vmlinuz", src: k.Vmlinuz},
		{path: "/initrd.img", data: initrd.Bytes()},
		{path: "/syslinux.cfg", data: []byte(syslinuxCfg)},
		{path: "/EFI/BOOT/BOOTX64.EFI", src: "/usr/lib/SYSLINUX.EFI/efi64/syslinux.efi"},
		{path: "/EFI/BOOT/ldlinux.e64", src: "/usr/lib/syslinux/modules/efi64/ldlinux.e64"},
		{path: "/EFI/BOOT/syslinux.cfg", data: []byte(syslinuxCfg)},
	}
	for _, f := range files {
		data := f.data
		if f.src != "" {
			if data, err = os.ReadFile(f.src); err != nil {
				lab.Missing(t, fmt.Sprintf("%v (syslinux-efi package)", err))
			}
		}
		w, err := fs.OpenFile(f.path, os.O_CREATE|os.O_RDWR)
		if err != nil {
			t.Fatalf("create %s: %v", f.path, err)
		}
		if _, err := w.Write(data); err != nil {
			t.Fatalf("write %s: %v", f.path, err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	// Boot code: syslinux's MBR, then its volume boot record and ldlinux.sys.
	mbrCode, err := os.ReadFile("/usr/lib/syslinux/mbr/mbr.bin")
	if err != nil {
		lab.Missing(t, "syslinux mbr.bin: "+err.Error())
	}
	img, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := img.WriteAt(mbrCode[:min(len(mbrCode), 440)], 0); err != nil {
		t.Fatal(err)
	}
	if err := img.Close(); err != nil {
		t.Fatal(err)
	}
	run(t, "syslinux", "--install", "--offset", strconv.Itoa(partStart*512), path)
	return path
}
