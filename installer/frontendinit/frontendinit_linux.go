package frontendinit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"ironbark/installer"
	"ironbark/installer/frontend"
	"ironbark/tui"
)

// Run is /init in frontend mode: mount the medium, then install
// unattended from the answer file the command line names, or run the
// screens on the console; reboot into the frontend when installed. A
// failure stops here, saying why, with the disk left unbootable.
func Run(ctx context.Context, cmdline string) error {
	say := func(format string, a ...any) { fmt.Fprintf(os.Stderr, "ironbark-installer: "+format+"\n", a...) }
	ring := &tui.LogRing{}
	log := slog.New(slog.NewTextHandler(io.MultiWriter(os.Stderr, ring), nil))
	if err := installer.LoadModules(log); err != nil {
		say("%v", err)
	}
	dev, err := MountMedium(ctx, installer.MediumDir, 60*time.Second)
	if err != nil {
		return stop(say, err)
	}
	say("install medium %s mounted on %s", dev, installer.MediumDir)
	md := frontend.Medium{Image: frontend.Image{Path: filepath.Join(installer.MediumDir, "images/frontend.img")}}
	if _, err := os.Stat(filepath.Join(installer.MediumDir, "rolls")); err == nil {
		md.RollsDir = filepath.Join(installer.MediumDir, "rolls")
	}
	if _, err := os.Stat(filepath.Join(installer.MediumDir, "boot", frontend.InstallerInitrd)); err == nil {
		md.InstallerDir = filepath.Join(installer.MediumDir, "boot")
	}
	if md.Appliances, err = frontend.ReadManifest(installer.MediumDir); err != nil {
		return stop(say, err)
	}
	m := frontend.WithoutDisk(frontend.SysMachine{}, dev)
	spec := installer.CmdArg(cmdline, installer.ArgAnswers)
	if spec == "" {
		a, err := tui.RunInstaller(ctx, os.Stdin, os.Stdout, m, md, "/tmp/answers.yaml", io.Discard)
		if err != nil {
			return stop(say, err)
		}
		say("frontend %s installed on %s; rebooting", a.Cluster.FQDN, a.Disk.Device)
		return installer.Finish("reboot")
	}
	path, err := FindAnswers(ctx, spec, 30*time.Second)
	if err != nil {
		return stop(say, err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return stop(say, err)
	}
	a, err := frontend.Parse(b)
	if err != nil {
		return stop(say, fmt.Errorf("answer file %s: %w", spec, err))
	}
	say("installing the frontend %s unattended from %s", a.Cluster.FQDN, spec)
	lastPct := -1
	report := func(p frontend.Progress) {
		if p.Total > 0 {
			if pct := int(100 * p.Done / p.Total); pct/10 != lastPct/10 {
				lastPct = pct
				say("step %d/%d %s: %d%% (%d of %d MiB, %.0f MiB/s, ETA %s)", p.Index, p.Of, p.Step, pct, p.Done>>20, p.Total>>20,
					p.Rate/(1<<20), p.ETA.Round(time.Second))
			}
			return
		}
		lastPct = -1
	}
	if err := frontend.Install(ctx, a, m, md, log, report); err != nil {
		return stop(say, err)
	}
	say("FRONTEND INSTALLED: %s on %s; rebooting into it", a.Cluster.FQDN, a.Disk.Device)
	return installer.Finish("reboot")
}

// stop reports a failure and keeps the machine up (no reboot loop into a
// failing install): the console shows why.
func stop(say func(string, ...any), err error) error {
	say("FRONTEND INSTALL FAILED: %v", err)
	say("nothing boots from the target disk; fix the cause and boot the installer again")
	unix.Sync()
	for {
		time.Sleep(time.Hour) // pid 1 stays; the console keeps the reason
	}
}

// MountMedium finds the block device holding the installer's medium (an
// ISO 9660 volume with images/frontend.img: the CD, or the ISO written to
// a USB stick) and mounts it read-only at dir.
func MountMedium(ctx context.Context, dir string, wait time.Duration) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	deadline := time.Now().Add(wait)
	for {
		for _, dev := range blockDevices() {
			if err := unix.Mount(dev, dir, "iso9660", unix.MS_RDONLY, ""); err != nil {
				continue
			}
			if _, err := os.Stat(filepath.Join(dir, "images/frontend.img")); err == nil {
				return dev, nil
			}
			_ = unix.Unmount(dir, 0)
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("no install medium: no device holds an ISO 9660 volume with images/frontend.img (devices: %s)",
				strings.Join(blockDevices(), " "))
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// blockDevices lists /dev nodes of the disks and partitions the kernel
// knows, CD drives first.
func blockDevices() []string {
	ents, _ := os.ReadDir("/sys/class/block")
	var cds, rest []string
	for _, e := range ents {
		n := e.Name()
		if strings.HasPrefix(n, "loop") || strings.HasPrefix(n, "ram") {
			continue
		}
		if strings.HasPrefix(n, "sr") {
			cds = append(cds, "/dev/"+n)
		} else {
			rest = append(rest, "/dev/"+n)
		}
	}
	return append(cds, rest...)
}

// FindAnswers resolves the command line's answer file: iso:/PATH on the
// medium, disk:/PATH on any other disk or partition (vfat, ext4 or ISO
// 9660: a USB stick, a second virtual disk), or a path in the initramfs.
func FindAnswers(ctx context.Context, spec string, wait time.Duration) (string, error) {
	if p, ok := strings.CutPrefix(spec, "iso:"); ok {
		return filepath.Join(installer.MediumDir, p), nil
	}
	p, ok := strings.CutPrefix(spec, "disk:")
	if !ok {
		return spec, nil
	}
	dir := "/run/ironbark/answers"
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	deadline := time.Now().Add(wait)
	for {
		for _, dev := range blockDevices() {
			for _, fstype := range []string{"vfat", "ext4", "iso9660"} {
				if err := unix.Mount(dev, dir, fstype, unix.MS_RDONLY, ""); err != nil {
					continue
				}
				if _, err := os.Stat(filepath.Join(dir, p)); err == nil {
					return filepath.Join(dir, p), nil
				}
				_ = unix.Unmount(dir, 0)
			}
		}
		if time.Now().After(deadline) {
			return "", errors.New("answer file " + spec + ": no disk holds " + p)
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}
