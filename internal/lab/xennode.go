package lab

import (
	"context"
	"crypto/rand"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"ironbark/images/initramfs"
)

// XenNode is a Xen host running inside one qemu (TCG) in a lab
// namespace: the hypervisor, a PV dom0 from a Dom0 root with its
// toolstack and libvirtd, and eth0 enslaved to the dom0 bridge xenbr0,
// which carries the node's address on the lab bridge.
type XenNode struct {
	Console string // the machine's serial console (Xen, then dom0's hvc0)
	proc    *Process
	net     *LabNet
	addr    netip.Addr
}

// Exec runs script with sh in dom0 (through the lab shell, from inside
// the lab namespace) and returns its output.
func (n *XenNode) Exec(t *testing.T, script string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := n.net.NS.Command(ctx, "busybox", "nc", n.addr.String(), "7777")
	cmd.Stdin = strings.NewReader(script + "\nexit\n")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("dom0 exec %q: %v: %s", script, err, out)
	}
	return string(out)
}

// XenNodeConfig describes one Xen node.
type XenNodeConfig struct {
	Dom0 *Dom0
	Net  *LabNet
	Dir  string       // work directory (disk overlay, initramfs, console)
	Addr netip.Prefix // dom0's address on xenbr0, inside Net's subnet
	MAC  string       // eth0's MAC ("" picks one)
	// Files are copied into dom0's root before it starts (an agent
	// binary, a config file).
	Files []initramfs.File
	// Run is shell run in dom0 once libvirtd answers on xen:///system,
	// its output on the console; it should not return while the node is
	// wanted (exec a daemon).
	Run string
	// Dom0MiB is dom0's memory (default 1024); the rest of the 3 GiB
	// machine is for guests.
	Dom0MiB int
}

// Dom0Ready is what dom0 prints on the console when the toolstack and
// libvirtd are up.
const Dom0Ready = "IRONBARK-DOM0-READY"

// dom0Init is dom0's PID 1: the toolstack in the order LAB.md measured
// (oxenstored, xen-init-dom0, xenconsoled, then libvirtd), no systemd or
// udev.
const dom0Init = `#!/bin/sh
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
# Without udev: Xen's block hotplug script loops on these until it times out.
ln -sf /proc/self/fd /dev/fd
ln -sf /proc/self/fd/0 /dev/stdin
ln -sf /proc/self/fd/1 /dev/stdout
ln -sf /proc/self/fd/2 /dev/stderr
for m in xenfs xen-evtchn xen-gntdev xen-gntalloc xen-privcmd xen-netback xen-blkback bridge loop virtio_net; do
	modprobe $m 2>/dev/null
done
mount -t xenfs xenfs /proc/xen
. /etc/ironbark-lab/node.env
hostname "$NODE_HOSTNAME"
ip link set lo up
ip link add xenbr0 type bridge
ip link set eth0 master xenbr0
ip link set eth0 up
ip addr add "$NODE_ADDR" dev xenbr0
ip link set xenbr0 up
# The lab shell: the test's way into dom0, only on the lab namespace's
# bridge (XenNode.Exec).
busybox nc -ll -p 7777 -e /bin/sh &
mkdir -p /run/xen /run/xenstored /var/run/xen /var/log/xen/console /var/log/libvirt /var/lib/xen /run/libvirt /var/lib/libvirt
XB=$(ls -d /usr/lib/xen-4.*/bin | tail -1)
$XB/oxenstored --pid-file=/run/xenstored.pid
$XB/xen-init-dom0
$XB/xenconsoled --pid-file=/run/xenconsoled.pid --log=guest --log-dir=/var/log/xen/console
# libvirtd loads its qemu driver too (libvirt-daemon depends on it), which
# refuses to start without the user libvirt-daemon-system would make.
getent group libvirt-qemu >/dev/null || groupadd -r libvirt-qemu
getent passwd libvirt-qemu >/dev/null || useradd -r -g libvirt-qemu -d /var/lib/libvirt -s /usr/sbin/nologin libvirt-qemu
# Cold reads through TCG's virtio disk are slow: warm the page cache for
# the hotplug scripts libxl runs (and kills after 40 s) at each guest start.
cat /etc/xen/scripts/* /usr/bin/bash /usr/sbin/losetup /usr/bin/xenstore* /usr/bin/flock /usr/bin/stat /usr/sbin/ip >/dev/null 2>&1
libvirtd -d
until virsh -c xen:///system version >/dev/null 2>&1; do sleep 1; done
echo ` + Dom0Ready + `
sh /etc/ironbark-lab/run.sh
echo "IRONBARK-DOM0-RUN-ENDED $?"
exec sleep infinity
`

// labBlockScript stands in for Xen's /etc/xen/scripts/block in the lab
// dom0, for file-backed disks (what the node agent gives its guests): the
// same loop device and the same xenstore keys, without the sharing checks
// and locking. The stock script starts some forty processes; at 0.3-0.5 s
// each under TCG on two busy cores it overruns the 40 s libxl gives a
// hotplug script, and the guest never starts. On real hardware the stock
// script (which the hypervisor-xen roll installs) takes well under a second.
const labBlockScript = `#!/bin/sh
p=$(xenstore-read "$XENBUS_PATH/params") || exit 1
case "$1" in
add)
	dev=$(losetup -f --show "$p") || exit 1
	xenstore-write "$XENBUS_PATH/node" "$dev" \
		"$XENBUS_PATH/physical-device" "$(stat -L -c %t:%T "$dev")" \
		"$XENBUS_PATH/physical-device-path" "$dev" \
		"$XENBUS_PATH/hotplug-status" connected
	;;
remove)
	node=$(xenstore-read "$XENBUS_PATH/node") && losetup -d "$node"
	exit 0
	;;
esac
`

// labVifScript stands in for Xen's /etc/xen/scripts/vif-bridge in the lab
// dom0, as labBlockScript does for block and for the same reason: the
// stock script (vif-common.sh, xen-network-common.sh, iptables, hooks)
// starts dozens of processes, and three guests starting at once on two
// busy cores overran libxl's 40 s. It does what the stock one does for a
// vif on a bridge: the vif takes the name the domain asks for (the node
// agent's tap name), joins the bridge the domain names, comes up.
const labVifScript = `#!/bin/sh
dev=$vif
name=$(xenstore-read "$XENBUS_PATH/vifname" 2>/dev/null)
if [ -n "$name" ]; then
	if [ "$1" = online ] && ! ip link show "$name" >/dev/null 2>&1; then
		ip link set "$dev" name "$name" || exit 1
	fi
	dev=$name
fi
case "$1" in
online)
	br=$(xenstore-read "$XENBUS_PATH/bridge") || exit 1
	ip link set dev "$dev" master "$br" || exit 1
	ip link set dev "$dev" up || exit 1
	xenstore-write "$XENBUS_PATH/hotplug-status" connected
	;;
offline)
	ip link set dev "$dev" nomaster 2>/dev/null
	ip link set dev "$dev" down 2>/dev/null
	;;
esac
exit 0
`

// dom0Initramfs is the initramfs's first word on the console: the
// kernel got through its own boot.
const dom0Initramfs = "IRONBARK-DOM0-INITRAMFS"

// bootStall is how long a console may stay silent before dom0's
// initramfs runs before the boot counts as hung. Under TCG on busy cores
// a kernel sometimes stops for good in its early boot (last seen after
// "MPTCP token hash table entries"); a healthy boot never goes quiet this
// long there, even at load 30.
const bootStall = 150 * time.Second

// initramfsInit mounts dom0's root (virtio disk), copies the node's files
// into it and switches to dom0Init.
const initramfsInit = `#!/bin/busybox sh
echo ` + dom0Initramfs + `
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t devtmpfs devtmpfs /dev
for m in $(cat /lib/modules/*/modules.load-order); do insmod $m; done
mkdir -p /newroot
n=0
until mount -t ext4 /dev/vda /newroot; do
	n=$((n+1)); [ $n -gt 50 ] && { echo "no root disk"; exec sh; }
	sleep 0.2
done
cp -a /node/. /newroot/
umount /proc /dev
exec switch_root /newroot /usr/sbin/ironbark-dom0-init
`

// StartXenNode boots the node in qemu inside cfg.Net's namespace, on a
// tap on its bridge; it is killed when the test ends.
func StartXenNode(t *testing.T, cfg XenNodeConfig) *XenNode {
	t.Helper()
	Require(t, "qemu-system-x86_64", "qemu-img")
	if cfg.Dom0MiB == 0 {
		cfg.Dom0MiB = 1024
	}
	if cfg.MAC == "" {
		var b [3]byte
		_, _ = rand.Read(b[:])
		cfg.MAC = fmt.Sprintf("52:54:00:%02x:%02x:%02x", b[0], b[1], b[2])
	}
	overlay := filepath.Join(cfg.Dir, "dom0.qcow2")
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", cfg.Dom0.Image, overlay).CombinedOutput(); err != nil {
		t.Fatalf("dom0 overlay: %v: %s", err, out)
	}
	env := fmt.Sprintf("NODE_ADDR=%s\nNODE_HOSTNAME=%s\n", cfg.Addr, "xen-"+strings.ReplaceAll(cfg.Addr.Addr().String(), ".", "-"))
	files := []initramfs.File{
		{Path: "init", Mode: 0o755, Data: []byte(initramfsInit)},
		{Path: "bin/busybox", Mode: 0o755, Source: Busybox(t)},
		initramfs.Dir("proc", 0o555), initramfs.Dir("newroot", 0o755),
		{Path: "node/usr/sbin/ironbark-dom0-init", Mode: 0o755, Data: []byte(dom0Init)},
		{Path: "node/etc/ironbark-lab/node.env", Mode: 0o644, Data: []byte(env)},
		{Path: "node/etc/ironbark-lab/run.sh", Mode: 0o755, Data: []byte(cfg.Run + "\n")},
		{Path: "node/usr/local/bin/busybox", Mode: 0o755, Source: Busybox(t)},
		{Path: "node/etc/xen/scripts/block", Mode: 0o755, Data: []byte(labBlockScript)},
		{Path: "node/etc/xen/scripts/vif-bridge", Mode: 0o755, Data: []byte(labVifScript)},
	}
	for _, f := range cfg.Files {
		f.Path = "node/" + strings.TrimPrefix(f.Path, "/")
		files = append(files, f)
	}
	initrd := filepath.Join(cfg.Dir, "dom0-initrd.gz")
	f, err := os.Create(initrd)
	if err != nil {
		t.Fatal(err)
	}
	_, err = initramfs.Build(f, initramfs.Spec{Files: files, ModulesDir: cfg.Dom0.ModulesDir(),
		Modules: []string{"virtio_pci", "virtio_blk", "crc32c_generic", "ext4"}})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatalf("dom0 initramfs: %v", err)
	}
	tap := cfg.Net.NS.Tap(t, cfg.Net.Bridge)
	n := &XenNode{Console: filepath.Join(cfg.Dir, "xen-console.log"), net: cfg.Net, addr: cfg.Addr.Addr()}
	// A comma inside a multiboot module's arguments is written ",,".
	modules := cfg.Dom0.Vmlinuz + " console=hvc0 root=/dev/vda," + initrd
	boot := func() {
		n.proc = cfg.Net.NS.Start(t, "qemu-system-x86_64",
			"-accel", "tcg", "-cpu", "qemu64,+svm,+npt,+vme,x-force-features=on", "-m", "3072", "-smp", "2",
			"-nodefaults", "-display", "none", "-no-reboot",
			"-serial", "file:"+n.Console,
			"-kernel", cfg.Dom0.Xen,
			"-append", fmt.Sprintf("console=com1 com1=115200 dom0_mem=%dM noreboot", cfg.Dom0MiB),
			"-initrd", modules,
			"-drive", "file="+overlay+",if=virtio,format=qcow2",
			"-netdev", "tap,id=n0,ifname="+tap+",script=no,downscript=no",
			"-device", "virtio-net-pci,netdev=n0,mac="+cfg.MAC,
		)
	}
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(n.Console)
			t.Logf("xen node console (tail):\n%s", tail(string(b), 6000))
		}
	})
	boot()
	if n.waitBooted(bootStall) {
		return n
	}
	// Hung in the kernel's early boot: one more boot, on a fresh overlay
	// and console; a second hang is the test's to report.
	b, _ := os.ReadFile(n.Console)
	t.Logf("xen node: console silent for %v before dom0's initramfs; booting it again. Console (tail):\n%s", bootStall, tail(string(b), 2000))
	n.proc.Kill()
	if err := os.Rename(n.Console, n.Console+".hung"); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", cfg.Dom0.Image, overlay).CombinedOutput(); err != nil {
		t.Fatalf("dom0 overlay: %v: %s", err, out)
	}
	boot()
	return n
}

// waitBooted waits for dom0's initramfs on the console. It returns false
// when the console stayed silent for stall before that, or when qemu
// ended: the boot hung or died.
func (n *XenNode) waitBooted(stall time.Duration) bool {
	var size int64
	changed := time.Now()
	for {
		b, _ := os.ReadFile(n.Console)
		if strings.Contains(string(b), dom0Initramfs) {
			return true
		}
		if int64(len(b)) != size {
			size, changed = int64(len(b)), time.Now()
		}
		if time.Since(changed) > stall || n.proc.Exited() {
			return false
		}
		time.Sleep(time.Second)
	}
}

// WaitConsole waits until s is on the node's console, or fails the test
// after timeout (a guard against hangs: TCG on busy cores is slow).
func (n *XenNode) WaitConsole(t *testing.T, s string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		b, _ := os.ReadFile(n.Console)
		if strings.Contains(string(b), s) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%q not on the xen node's console (qemu: %s); tail:\n%s", s, tail(n.proc.Output(), 1000), tail(string(b), 4000))
		}
		time.Sleep(time.Second)
	}
}
