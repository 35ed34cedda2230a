package images

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"sort"
	"strings"
	"time"

	"ironbark/images/disk"
)

// Format of a machine image file.
const (
	FormatFS   = "fs"   // a bare ext4 filesystem (EC2 partition image: needs an EKI/ERI)
	FormatDisk = "disk" // a whole GPT disk with ESP and syslinux, booting its own kernel
)

// BuildSpec describes `ironbark image build`.
type BuildSpec struct {
	From   string // root filesystem: a directory or a tar (gzip/zstd) file
	Out    string // image file to write
	Format string // FormatFS (default) or FormatDisk
	Size   int64  // 0: computed from the content
	// KernelOut and RamdiskOut, when set, receive the kernel and initramfs
	// found in the source's /boot (vmlinuz-*, initrd.img-*): the EKI and
	// ERI that go with a filesystem image.
	KernelOut, RamdiskOut string
	Cmdline               string // disk format: kernel command line (root= is added)
	Seed                  string // reproducibility seed (default: the output's base name)
	Time                  time.Time
	Logger                *slog.Logger
}

// BuildResult says what was built.
type BuildResult struct {
	Format          string
	Size            int64
	Kernel, Ramdisk string // source paths (inside the tree) of the EKI/ERI, if found
	FS              *disk.Result
	RootPartUUID    string
}

// Build makes a machine image from a root filesystem tree or tarball.
// Outputs appear only when complete.
func Build(ctx context.Context, s BuildSpec) (*BuildResult, error) {
	if s.Logger == nil {
		s.Logger = slog.New(slog.DiscardHandler)
	}
	if s.Format == "" {
		s.Format = FormatFS
	}
	if s.Seed == "" {
		s.Seed = path.Base(s.Out)
	}
	src, err := disk.OpenSource(s.From)
	if err != nil {
		return nil, err
	}
	res := &BuildResult{Format: s.Format}
	var boot bootFiles
	if s.KernelOut != "" || s.RamdiskOut != "" || s.Format == FormatDisk {
		boot, err = findBootFiles(ctx, src)
		if err != nil {
			return nil, err
		}
		res.Kernel, res.Ramdisk = boot.kernel, boot.ramdisk
	}
	fsOpts := disk.FSOptions{Label: "cloudimg-rootfs", Seed: s.Seed, Time: s.Time, KeepOwners: true, Logger: s.Logger}
	switch s.Format {
	case FormatFS:
		res.FS, err = disk.BuildFilesystem(ctx, s.Out, disk.FSExt4, src, s.Size, fsOpts)
		if err != nil {
			return nil, err
		}
		res.Size = res.FS.Size
	case FormatDisk:
		if boot.kernel == "" {
			return nil, fmt.Errorf("image build: --format disk needs a kernel in the source's /boot (vmlinuz-*)")
		}
		tmp, err := os.MkdirTemp("", "ironbark-boot-*")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(tmp)
		k, r := tmp+"/vmlinuz", ""
		if err := extract(ctx, src, boot.kernel, k); err != nil {
			return nil, err
		}
		if boot.ramdisk != "" {
			r = tmp + "/initrd.img"
			if err := extract(ctx, src, boot.ramdisk, r); err != nil {
				return nil, err
			}
		}
		cmdline := s.Cmdline
		if cmdline == "" {
			cmdline = "console=tty0 console=ttyS0,115200 ro"
		}
		d, err := disk.BuildDisk(ctx, s.Out, disk.DiskSpec{
			Table: disk.GPT, Size: s.Size, Root: src, FS: fsOpts,
			Boot: &disk.Boot{Kernel: k, Initrd: r, Cmdline: cmdline},
		})
		if err != nil {
			return nil, err
		}
		res.FS, res.Size, res.RootPartUUID = d.Root, d.Size, d.RootPartUUID
	default:
		return nil, fmt.Errorf("image build: unknown format %q (fs, disk)", s.Format)
	}
	for _, x := range []struct{ from, to, what string }{{boot.kernel, s.KernelOut, "kernel"}, {boot.ramdisk, s.RamdiskOut, "ramdisk"}} {
		if x.to == "" {
			continue
		}
		if x.from == "" {
			return nil, fmt.Errorf("image build: no %s in the source's /boot", x.what)
		}
		if err := extract(ctx, src, x.from, x.to); err != nil {
			return nil, err
		}
	}
	return res, nil
}

type bootFiles struct{ kernel, ramdisk string }

// findBootFiles picks the newest-named boot/vmlinuz-* and the matching
// boot/initrd.img-* of a tree (symlinks such as /vmlinuz are resolved
// inside the tree only).
func findBootFiles(ctx context.Context, src disk.Source) (bootFiles, error) {
	var kernels []string
	ramdisks := map[string]string{}
	err := src.Walk(ctx, func(e *disk.Entry, _ io.Reader) error {
		if !e.Mode.IsRegular() || path.Dir(e.Path) != "boot" {
			return nil
		}
		b := path.Base(e.Path)
		if v, ok := strings.CutPrefix(b, "vmlinuz-"); ok {
			kernels = append(kernels, v)
		}
		if v, ok := strings.CutPrefix(b, "initrd.img-"); ok {
			ramdisks[v] = e.Path
		}
		return nil
	})
	if err != nil {
		return bootFiles{}, err
	}
	if len(kernels) == 0 {
		return bootFiles{}, nil
	}
	sort.Strings(kernels)
	v := kernels[len(kernels)-1]
	return bootFiles{kernel: "boot/vmlinuz-" + v, ramdisk: ramdisks[v]}, nil
}

// extract copies one regular file of the source to a host path.
func extract(ctx context.Context, src disk.Source, name, to string) error {
	found := false
	errStop := errors.New("stop")
	err := src.Walk(ctx, func(e *disk.Entry, r io.Reader) error {
		if e.Path != name || !e.Mode.IsRegular() || r == nil {
			return nil
		}
		tmp := to + ".tmp"
		out, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, r); err != nil {
			out.Close()
			os.Remove(tmp)
			return fmt.Errorf("extract %s: %w", name, err)
		}
		if err := out.Close(); err != nil {
			os.Remove(tmp)
			return err
		}
		found = true
		if err := os.Rename(tmp, to); err != nil {
			return err
		}
		return errStop
	})
	if err != nil && !errors.Is(err, errStop) {
		return err
	}
	if !found {
		return fmt.Errorf("extract %s: %w", name, fs.ErrNotExist)
	}
	return nil
}
