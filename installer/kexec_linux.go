package installer

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// LoadKexec loads the installed disk's boot entry as the kernel to kexec
// into (kexec_file_load: the running kernel checks and places it). The
// boot partition is mounted read-only with the kernel's vfat (go-diskfs
// reads a FAT cluster at a time: seconds for an initramfs) and unmounted
// once the kernel holds its copy.
func LoadKexec(disk string, e BootEntry) error {
	part, err := firstPartition(disk)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "ironbark-esp-")
	if err != nil {
		return fmt.Errorf("kexec: %w", err)
	}
	defer os.Remove(dir)
	// utf8: the installer initramfs carries nls_utf8, not the kernel's
	// default iocharset (ascii).
	if err := unix.Mount(part, dir, "vfat", unix.MS_RDONLY, "iocharset=utf8"); err != nil {
		return fmt.Errorf("mount %s: %w", part, err)
	}
	defer unix.Unmount(dir, 0)
	kernel, err := os.Open(filepath.Join(dir, e.Kernel))
	if err != nil {
		return fmt.Errorf("kexec: %w", err)
	}
	defer kernel.Close()
	initrdFd, flags := -1, 0
	if e.Initrd != "" {
		initrd, err := os.Open(filepath.Join(dir, e.Initrd))
		if err != nil {
			return fmt.Errorf("kexec: %w", err)
		}
		defer initrd.Close()
		initrdFd = int(initrd.Fd())
	} else {
		flags |= unix.KEXEC_FILE_NO_INITRAMFS
	}
	if err := unix.KexecFileLoad(int(kernel.Fd()), initrdFd, e.Cmdline, flags); err != nil {
		return fmt.Errorf("kexec_file_load %s: %w", e.Kernel, err)
	}
	return nil
}

// firstPartition has the kernel read disk's new partition table and
// returns its first partition's device (vda1, nvme0n1p1).
func firstPartition(disk string) (string, error) {
	f, err := os.Open(disk)
	if err != nil {
		return "", fmt.Errorf("kexec: %w", err)
	}
	err = unix.IoctlSetInt(int(f.Fd()), unix.BLKRRPART, 0)
	f.Close()
	if err != nil {
		return "", fmt.Errorf("re-read the partition table of %s: %w", disk, err)
	}
	part := disk + "1"
	if last := disk[len(disk)-1]; last >= '0' && last <= '9' {
		part = disk + "p1"
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if _, err := os.Stat(part); err == nil {
			return part, nil
		} else if !errors.Is(err, os.ErrNotExist) || time.Now().After(deadline) {
			return "", fmt.Errorf("partition %s of %s: %w", strings.TrimPrefix(part, "/dev/"), disk, err)
		}
	}
}
