package frontendtest

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"ironbark/images/initramfs"
	"ironbark/internal/lab"
)

// UpMarker is what the lab frontend prints on its console when its
// services are started.
const UpMarker = "IRONBARK-FRONTEND-UP"

// LabShellPort is where the lab frontend's admin shell listens (see the
// init below).
const LabShellPort = "7777"

// labFrontendInit is /init of the lab frontend: the whole system is the
// initramfs on the ESP (like the compute appliance); it mounts the data
// partition the installer made (found by its GPT name) at
// /var/lib/ironbark, brings the interfaces up as frontend.env says and
// runs the controller (EC2 on the public side) and PXE on the private
// interface.
const labFrontendInit = `#!/bin/sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
for m in $(cat /lib/modules/*/modules.load-order); do insmod /$m; done
data=""
i=0
while [ -z "$data" ] && [ $i -lt 100 ]; do
  for u in /sys/class/block/*/uevent; do
    grep -q '^PARTNAME=ironbark-data$' $u && data=/dev/$(basename $(dirname $u))
  done
  [ -z "$data" ] && sleep 0.1
  i=$((i+1))
done
[ -n "$data" ] || { echo "IRONBARK-FRONTEND-FAILED: no ironbark-data partition"; poweroff -f; }
mkdir -p /var/lib/ironbark
mount -t ext4 $data /var/lib/ironbark || { echo "IRONBARK-FRONTEND-FAILED: mount $data"; poweroff -f; }
. /var/lib/ironbark/frontend.env
hostname "$IRONBARK_FQDN"
ip link set lo up
ip link set "$IRONBARK_PUBLIC_IF" up
if [ "$IRONBARK_PUBLIC_DHCP" = no ]; then
  ip addr add "$IRONBARK_PUBLIC_ADDR" dev "$IRONBARK_PUBLIC_IF"
  [ -n "$IRONBARK_PUBLIC_GW" ] && ip route add default via "$IRONBARK_PUBLIC_GW"
fi
ip link set "$IRONBARK_PRIVATE_IF" up
ip addr add "$IRONBARK_PRIVATE_ADDR" dev "$IRONBARK_PRIVATE_IF"
mkdir -p /var/log
endpoint=https://$IRONBARK_FQDN:8773/
[ "$IRONBARK_PUBLIC_DHCP" = no ] && endpoint=https://${IRONBARK_PUBLIC_ADDR%/*}:8773/
ironbark controller --data-dir /var/lib/ironbark --listen 0.0.0.0:8773 --node-listen 0.0.0.0:8774 --endpoint $endpoint --server-name "${IRONBARK_PRIVATE_ADDR%/*}" >/var/log/controller.log 2>&1 &
ironbark pxe --interface "$IRONBARK_PRIVATE_IF" --data-dir /var/lib/ironbark >/var/log/pxe.log 2>&1 &
# The lab image has no sshd: its administrator's way in (the rack lab's,
# cmd/ironbark-rack) is a root shell on port ` + LabShellPort + ` (busybox nc binds every
# address). Lab networks only: a real frontend takes the admin's SSH key.
[ "$IRONBARK_PUBLIC_DHCP" = no ] && setsid nc -ll -p ` + LabShellPort + ` -e /bin/sh </dev/null >/dev/null 2>&1 &
echo "` + UpMarker + ` $IRONBARK_FQDN data=$data public=$IRONBARK_PUBLIC_ADDR private=$IRONBARK_PRIVATE_ADDR"
while true; do sleep 3600; done
`

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// LabFrontendInit is the lab frontend's /init, for cache keys.
func LabFrontendInit() string { return labFrontendInit }

// LabFrontendImage builds a frontend appliance image that boots: the
// cloud kernel, and an initramfs with busybox, the static ironbark binary
// and the lab init above.
func LabFrontendImage(t testing.TB, dir string, k *lab.Kernel, ironbarkBin string) string {
	t.Helper()
	lab.Require(t, "syslinux")
	img, err := BuildLabFrontendImage(dir, k, lab.Busybox(t), ironbarkBin)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// BuildLabFrontendImage is LabFrontendImage for programs outside tests
// (cmd/ironbark-rack), with the static busybox to put in it.
func BuildLabFrontendImage(dir string, k *lab.Kernel, busybox, ironbarkBin string) (string, error) {
	initrd := filepath.Join(dir, "frontend-initrd.img")
	f, err := os.Create(initrd)
	if err != nil {
		return "", err
	}
	files := []initramfs.File{
		{Path: "init", Mode: 0o755, Data: []byte(labFrontendInit)},
		{Path: "bin/busybox", Mode: 0o755, Source: busybox},
		{Path: "bin/ironbark", Mode: 0o755, Source: ironbarkBin},
		initramfs.Symlink("bin/sh", "busybox"),
		initramfs.Dir("proc", 0o555), initramfs.Dir("sys", 0o555), initramfs.Dir("dev", 0o755),
		initramfs.Dir("tmp", 0o1777), initramfs.Dir("var", 0o755),
	}
	// iPXE for the nodes, as the ipxe package puts it (ironbark pxe's
	// default --tftp-dir), when this machine has it.
	for _, b := range []string{"undionly.kpxe", "snponly.efi", "ipxe.efi"} {
		if p := filepath.Join("/usr/lib/ipxe", b); fileExists(p) {
			files = append(files, initramfs.File{Path: "usr/lib/ipxe/" + b, Mode: 0o644, Source: p})
		}
	}
	_, err = initramfs.Build(f, initramfs.Spec{
		Files:      files,
		Modules:    []string{"virtio_pci", "virtio_net", "virtio_blk"},
		ModulesDir: k.ModulesDir(),
	})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("lab frontend initramfs: %w", err)
	}
	return BuildImage(dir, ImageSpec{Kernel: k.Vmlinuz, Initrd: initrd, Cmdline: "console=ttyS0 panic=-1"})
}
