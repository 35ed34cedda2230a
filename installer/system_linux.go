package installer

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// MountBasics mounts proc, sys and devtmpfs, as /init must.
func MountBasics() error {
	for _, m := range []struct{ src, dst, fstype string }{
		{"proc", "/proc", "proc"},
		{"sysfs", "/sys", "sysfs"},
		{"devtmpfs", "/dev", "devtmpfs"},
	} {
		if err := os.MkdirAll(m.dst, 0o755); err != nil {
			return err
		}
		if err := unix.Mount(m.src, m.dst, m.fstype, 0, ""); err != nil && !errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("mount %s: %w", m.dst, err)
		}
	}
	return nil
}

// LoadModules insmods the modules listed, in order, in every
// lib/modules/*/modules.load-order of the initramfs.
func LoadModules(log *slog.Logger) error {
	lists, _ := filepath.Glob("/lib/modules/*/modules.load-order")
	for _, list := range lists {
		data, err := os.ReadFile(list)
		if err != nil {
			return err
		}
		for _, p := range strings.Fields(string(data)) {
			if !strings.HasPrefix(p, "/") {
				p = "/" + p
			}
			if err := loadModule(p); err != nil {
				return err
			}
			log.Debug("module loaded", "module", filepath.Base(p))
		}
	}
	return nil
}

func loadModule(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return fmt.Errorf("module %s: %w", p, err)
	}
	defer f.Close()
	if err := unix.FinitModule(int(f.Fd()), "", 0); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("load module %s: %w", filepath.Base(p), err)
	}
	return nil
}

// findLink returns the NIC with mac, or the first non-loopback one,
// waiting for the driver to register it.
func findLink(ctx context.Context, mac net.HardwareAddr) (netlink.Link, error) {
	for {
		links, err := netlink.LinkList()
		if err != nil {
			return nil, fmt.Errorf("list links: %w", err)
		}
		for _, l := range links {
			a := l.Attrs()
			if a.Flags&net.FlagLoopback != 0 || len(a.HardwareAddr) != 6 {
				continue
			}
			if mac == nil || a.HardwareAddr.String() == mac.String() {
				return l, nil
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("no network interface with MAC %v: %w", mac, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Network brings up the NIC: with the address from the command line, or by
// DHCP when there is none. It returns the address it configured.
func Network(ctx context.Context, c Config, log *slog.Logger) (net.IP, error) {
	if lo, err := netlink.LinkByName("lo"); err == nil {
		_ = netlink.LinkSetUp(lo)
	}
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	link, err := findLink(wctx, c.MAC)
	if err != nil {
		return nil, err
	}
	name := link.Attrs().Name
	if err := netlink.LinkSetUp(link); err != nil {
		return nil, fmt.Errorf("bring up %s: %w", name, err)
	}
	ip, mask, gw := c.IP, c.Mask, c.Gateway
	if ip == nil {
		client, err := nclient4.New(name)
		if err != nil {
			return nil, fmt.Errorf("dhcp on %s: %w", name, err)
		}
		defer client.Close()
		lease, err := client.Request(wctx)
		if err != nil {
			return nil, fmt.Errorf("dhcp on %s: %w", name, err)
		}
		ip, mask = lease.ACK.YourIPAddr, lease.ACK.SubnetMask()
		if r := lease.ACK.Router(); len(r) > 0 {
			gw = r[0]
		}
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: ip, Mask: mask}}
	if err := netlink.AddrAdd(link, addr); err != nil && !errors.Is(err, unix.EEXIST) {
		return nil, fmt.Errorf("address %s on %s: %w", addr, name, err)
	}
	if gw != nil && !gw.IsUnspecified() {
		if err := netlink.RouteAdd(&netlink.Route{LinkIndex: link.Attrs().Index, Gw: gw}); err != nil && !errors.Is(err, unix.EEXIST) {
			return nil, fmt.Errorf("default route via %s: %w", gw, err)
		}
	}
	log.Info("network up", "iface", name, "addr", addr.IPNet.String(), "gw", gw)
	return ip, nil
}

// FindDisk returns the target disk: the one named, or the first virtio,
// SCSI/SATA or NVMe disk.
func FindDisk(ctx context.Context, name string) (string, error) {
	if name != "" {
		if !strings.HasPrefix(name, "/") {
			name = "/dev/" + name
		}
		return name, nil
	}
	for {
		for _, pat := range []string{"vd[a-z]", "sd[a-z]", "nvme[0-9]n[0-9]"} {
			m, _ := filepath.Glob("/sys/block/" + pat)
			if len(m) > 0 {
				return "/dev/" + filepath.Base(m[0]), nil
			}
		}
		select {
		case <-ctx.Done():
			return "", errors.New("no disk found (looked for vd*, sd*, nvme*n*)")
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Finish syncs and reboots, halts or powers off; "kexec" starts the
// kernel LoadKexec loaded.
func Finish(action string) error {
	unix.Sync()
	cmd := unix.LINUX_REBOOT_CMD_RESTART
	switch action {
	case "kexec":
		cmd = unix.LINUX_REBOOT_CMD_KEXEC
	case "halt":
		cmd = unix.LINUX_REBOOT_CMD_HALT
	case "poweroff":
		cmd = unix.LINUX_REBOOT_CMD_POWER_OFF
	}
	return unix.Reboot(cmd)
}

// Cmdline reads /proc/cmdline.
func Cmdline() (string, error) {
	b, err := os.ReadFile("/proc/cmdline")
	return string(b), err
}

// Rescue keeps the node up with its network configured: it runs /bin/sh
// if the initramfs has one, else waits, printing how to reach the node.
func Rescue(ctx context.Context, ip net.IP, log *slog.Logger) {
	if _, err := os.Stat("/bin/sh"); err == nil {
		_ = unix.Exec("/bin/sh", []string{"sh"}, os.Environ())
	}
	log.Info("rescue mode: no shell in this initramfs; the node stays up", "addr", ip)
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		if ctx.Err() != nil {
			return
		}
	}
	<-ctx.Done()
}
