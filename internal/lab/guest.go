package lab

import (
	"os"
	"path/filepath"
	"testing"

	"ironbark/images/initramfs"
)

// XenGuestMarker ends XenGuestInitramfs' report on the guest's console.
const XenGuestMarker = "IRONBARK-XEN-GUEST-DONE"

// XenGuestInitramfs writes dir/initrd-xen.gz, a busybox ramdisk for a Xen
// PV guest (the console is hvc0, the NIC xen-netfront) booted with the
// guest kernel k: it takes an address by DHCP, asks the metadata service
// for its instance id, prints "IP=...", "INSTANCE-ID=...", runs its user
// data with sh when it has some (its output on the console too), prints
// XenGuestMarker, and idles.
func XenGuestInitramfs(t testing.TB, dir string, k *Kernel) string {
	t.Helper()
	initScript := `#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec >/dev/hvc0 2>&1
for m in $(cat /lib/modules/*/modules.load-order); do insmod $m; done
n=0
until ip link show eth0 >/dev/null 2>&1 || [ $n -gt 100 ]; do n=$((n+1)); sleep 0.2; done
ip link set lo up
udhcpc -i eth0 -s /udhcpc.sh -q -f -n -t 30 -T 3 || echo "udhcpc failed"
` + GuestMetadataShell + `
echo "INSTANCE-ID=$(md instance-id)"
ud=$(printf 'GET /latest/user-data HTTP/1.0\r\nHost: 169.254.169.254\r\n\r\n' | nc -w 20 169.254.169.254 80 | tr -d '\r')
case "$ud" in
"HTTP/1."?" 200"*) echo "$ud" | sed '1,/^$/d' >/tmp/user-data; sh /tmp/user-data ;;
esac
echo ` + XenGuestMarker + `
exec sleep 1000000
`
	return DHCPGuestInitramfs(t, filepath.Join(dir, "initrd-xen.gz"), k, initScript, "xen_netfront")
}

// GuestMetadataShell defines md PATH in a guest's busybox shell: it
// prints the metadata service's answer for latest/meta-data/PATH. The
// lab's static busybox wget segfaults in these guests (udhcpc and nc do
// not), so it is plain HTTP over nc.
const GuestMetadataShell = `md() { printf 'GET /latest/meta-data/%s HTTP/1.0\r\nHost: 169.254.169.254\r\n\r\n' "$1" |
	nc -w 20 169.254.169.254 80 | tr -d '\r' | sed '1,/^$/d'; }`

// DHCPGuestInitramfs writes a busybox initramfs whose init is initScript,
// with /udhcpc.sh (configures eth0 and prints "IP=<address>") and the
// given modules of the guest kernel k, to path.
func DHCPGuestInitramfs(t testing.TB, path string, k *Kernel, initScript string, modules ...string) string {
	t.Helper()
	script := `#!/bin/sh
case "$1" in
deconfig) ip addr flush dev "$interface"; ip link set "$interface" up ;;
bound|renew)
	ifconfig "$interface" "$ip" netmask "$subnet"
	[ -n "$router" ] && route add default gw "$router" dev "$interface"
	echo "IP=$ip" ;;
esac
`
	spec := initramfs.Spec{
		Files: []initramfs.File{
			{Path: "init", Mode: 0o755, Data: []byte(initScript)},
			{Path: "udhcpc.sh", Mode: 0o755, Data: []byte(script)},
			{Path: "bin/busybox", Mode: 0o755, Source: Busybox(t)},
			initramfs.Symlink("bin/sh", "busybox"),
			initramfs.Dir("proc", 0o555), initramfs.Dir("sys", 0o555), initramfs.Dir("tmp", 0o1777),
		},
		Modules:    modules,
		ModulesDir: k.ModulesDir(),
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := initramfs.Build(f, spec); err != nil {
		f.Close()
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}
