package initramfs_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"ironbark/images/initramfs"
	"ironbark/images/internal/qemuboot"
	"ironbark/internal/lab"
)

// TestBootBusybox boots the Debian cloud kernel with a busybox initramfs
// whose /init loads virtio_net with modprobe and lists the NICs.
func TestBootBusybox(t *testing.T) {
	lab.Require(t, "qemu-system-x86_64")
	k := lab.GuestKernel(t)
	bb := lab.Busybox(t)
	initScript := `#!/bin/sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
modprobe virtio_pci || echo modprobe virtio_pci failed
modprobe virtio_net || echo modprobe virtio_net failed
echo "NICS: $(ls /sys/class/net | tr '\n' ' ')"
echo "IRONBARK-INITRAMFS-$((40+2))"
poweroff -f
`
	spec := initramfs.Spec{
		Files: []initramfs.File{
			{Path: "init", Mode: 0o755, Data: []byte(initScript)},
			{Path: "bin/busybox", Mode: 0o755, Source: bb},
			initramfs.Symlink("bin/sh", "busybox"),
			initramfs.Dir("proc", 0o555), initramfs.Dir("sys", 0o555), initramfs.Dir("tmp", 0o1777),
		},
		Modules:     []string{"virtio_pci", "virtio_net"},
		ModulesDir:  k.ModulesDir(),
		Compression: initramfs.Zstd,
	}
	img := filepath.Join(t.TempDir(), "initrd.zst")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	res, err := initramfs.Build(f, spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d entries, modules: %v", res.Entries, res.LoadOrder)
	out := qemuboot.Boot(t, qemuboot.Options{
		Args: []string{"-kernel", k.Vmlinuz, "-initrd", img, "-append", "console=ttyS0 panic=-1",
			"-netdev", "user,id=n0,restrict=on", "-device", "virtio-net-pci,netdev=n0"},
		Marker:  "IRONBARK-INITRAMFS-42",
		Timeout: 90 * time.Second,
	})
	if strings.Contains(out, "modprobe virtio") || !strings.Contains(out, "NICS: eth0") {
		t.Fatalf("virtio_net did not come up:\n%s", out[max(0, len(out)-3000):])
	}
}
