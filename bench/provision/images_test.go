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

// bootedMarker is the installed image's first line, as soon as its
// userspace runs (after the reboot or kexec and the kernel's boot).
const bootedMarker = "IRONBARK-BENCH-BOOTED"

// installedInit is /init of the installed appliance: it mounts its boot
// partition (the ESP, where the installer wrote the identity), brings up
// the NIC by DHCP from the frontend (the enrollment token is bound to
// the address the host leased), prints the marker with the host name and
// runs the node agent on libvirt's test driver, which enrolls with the
// identity's controller and token. An agent that gives up powers off.
const installedInit = `#!/bin/sh
/bin/busybox --install -s /bin
echo ` + bootedMarker + `
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /tmp /run /root /boot/efi /var/lib/ironbark-node
for m in $(cat /lib/modules/*/modules.load-order); do insmod /$m; done
i=0; while [ ! -b /dev/vda1 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
mount -t vfat /dev/vda1 /boot/efi || echo "mount /dev/vda1 failed"
ip link set lo up
i=0; while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
ip link set eth0 up
udhcpc -i eth0 -f -q -n -t 30 -T 1 -s /bin/dhcp.script || echo "no DHCP lease"
echo "` + installedMarker + `$(cat /boot/efi/ironbark/hostname)"
HOME=/root /usr/sbin/ironbark-node --identity /boot/efi/ironbark/node.json --libvirt test:///default --state-dir /var/lib/ironbark-node
echo "ironbark-node exited: $?"
poweroff -f
`

// dhcpScript is busybox udhcpc's hook: it configures the lease.
const dhcpScript = `#!/bin/sh
case "$1" in bound|renew) ;; *) exit 0 ;; esac
ifconfig "$interface" "$ip" netmask "$subnet"
[ -n "$router" ] && route add default gw "${router%% *}" dev "$interface"
exit 0
`

const floorInit = `#!/bin/sh
echo ` + floorMarker + `
/bin/busybox poweroff -f
`

// busyboxInitramfs writes a gzip initramfs with busybox, init and the
// named kernel modules (with their dependencies) to dir/name.
func busyboxInitramfs(b *testing.B, k *lab.Kernel, dir, name, init string, modules []string, extra ...initramfs.File) string {
	b.Helper()
	var buf bytes.Buffer
	spec := initramfs.Spec{Files: append([]initramfs.File{
		{Path: "init", Mode: 0o755, Data: []byte(init)},
		{Path: "bin/busybox", Mode: 0o755, Source: lab.Busybox(b)},
		initramfs.Symlink("bin/sh", "busybox"),
		initramfs.Dir("dev", 0o755), initramfs.Dir("proc", 0o555), initramfs.Dir("sys", 0o555),
	}, extra...), Compression: initramfs.Zstd}
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
// syslinux for BIOS) holds the kernel and an initramfs with busybox, the
// node agent and the shared libraries it links (libvirt's test driver
// among them, in libvirt.so), and a small ext4 root.
func applianceImage(b *testing.B, k *lab.Kernel, dir, agent string) string {
	b.Helper()
	extra := []initramfs.File{
		{Path: "usr/sbin/ironbark-node", Mode: 0o755, Source: agent},
		{Path: "bin/dhcp.script", Mode: 0o755, Data: []byte(dhcpScript)},
	}
	for _, lib := range sharedLibs(b, agent) {
		extra = append(extra, initramfs.File{Path: strings.TrimPrefix(lib, "/"), Mode: 0o755, Source: lib})
	}
	initrd := busyboxInitramfs(b, k, dir, "appliance.initrd.img", installedInit,
		// nf_tables and friends: the agent keeps its NAT table as on a real node.
		[]string{"virtio_pci", "virtio_net", "virtio_blk", "vfat", "nls_cp437", "nls_utf8", "nls_ascii",
			"nf_tables", "nft_chain_nat", "nft_nat", "nft_masq", "nft_ct"}, extra...)
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

// sharedLibs lists the files the dynamic loader maps for bin (ldd), by
// the paths it asks for them.
func sharedLibs(b *testing.B, bin string) []string {
	b.Helper()
	out, err := exec.Command("ldd", bin).Output()
	if err != nil {
		b.Fatalf("ldd %s: %v", bin, err)
	}
	var libs []string
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		switch {
		case len(f) >= 3 && f[1] == "=>" && strings.HasPrefix(f[2], "/"):
			libs = append(libs, f[2])
		case len(f) >= 1 && strings.HasPrefix(f[0], "/"): // the loader itself
			libs = append(libs, f[0])
		}
	}
	if len(libs) == 0 {
		b.Fatalf("ldd %s: no libraries in %q", bin, out)
	}
	return libs
}

// buildBinaries builds ironbark, the static node installer and the node
// agent (cgo, libvirt).
func buildBinaries(b *testing.B, dir string) (ironbark, installer, agent string) {
	b.Helper()
	ironbark, installer, agent = filepath.Join(dir, "ironbark"), filepath.Join(dir, "ironbark-installer"), filepath.Join(dir, "ironbark-node")
	for out, pkg := range map[string]string{ironbark: "./cmd/ironbark", installer: "./cmd/ironbark-installer", agent: "./cmd/ironbark-node"} {
		cmd := exec.Command("go", "build", "-o", out, pkg)
		cmd.Dir = filepath.Join("..", "..") // go test runs in bench/provision
		cmd.Env = os.Environ()
		if pkg != "./cmd/ironbark-node" {
			cmd.Env = append(cmd.Env, "CGO_ENABLED=0")
		}
		if msg, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("go build %s: %v\n%s", pkg, err, msg)
		}
	}
	return ironbark, installer, agent
}

// ironbarkCmd runs one ironbark command to completion.
func ironbarkCmd(b *testing.B, bin string, args ...string) {
	b.Helper()
	if out, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
		b.Fatalf("ironbark %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}
