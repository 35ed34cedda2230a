package pxe

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"ironbark/images/blobstore"
	"ironbark/images/initramfs"
	"ironbark/internal/datadir"
)

// BuildInstallerInitramfs writes the installer initramfs: the static
// installer binary as /init plus the virtio modules of the kernel whose
// module tree is modulesDir, in load order.
func BuildInstallerInitramfs(w io.Writer, installerBin, modulesDir string) error {
	_, err := initramfs.Build(w, initramfs.Spec{
		Files: []initramfs.File{
			{Path: "init", Mode: 0o755, Source: installerBin},
			initramfs.Dir("proc", 0o555), initramfs.Dir("sys", 0o555), initramfs.Dir("dev", 0o755),
			initramfs.Dir("tmp", 0o1777),
		},
		// virtio PCI, network and block, with their dependencies; the CD
		// drive and ISO 9660, where the frontend installer finds its medium.
		Modules:     []string{"virtio_pci", "virtio_net", "virtio_blk", "ata_piix", "sr_mod", "virtio_scsi", "sd_mod", "isofs", "vfat", "nls_cp437", "nls_utf8"},
		ModulesDir:  modulesDir,
		Compression: initramfs.Gzip,
	})
	if err != nil {
		return fmt.Errorf("installer initramfs: %w", err)
	}
	return nil
}

// Layout names the files of a frontend's PXE data directory.
type Layout struct{ DataDir string }

// BootDir holds vmlinuz and installer.img for the installer.
func (l Layout) BootDir() string { return datadir.Dir(l.DataDir).PXEBoot() }

// Blobs opens the frontend's content-addressed image store, which holds
// the appliance images.
func (l Layout) Blobs() (*blobstore.Store, error) {
	return blobstore.Open(datadir.Dir(l.DataDir).Images())
}

// InstallBootFiles copies the installer kernel and writes the installer
// initramfs into the data directory.
func (l Layout) InstallBootFiles(kernel, installerBin, modulesDir string) error {
	if err := os.MkdirAll(l.BootDir(), 0o700); err != nil { // in the private data dir
		return err
	}
	if err := copyFile(kernel, filepath.Join(l.BootDir(), "vmlinuz")); err != nil {
		return err
	}
	tmp := filepath.Join(l.BootDir(), ".installer.img.tmp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if err := BuildInstallerInitramfs(f, installerBin, modulesDir); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(l.BootDir(), "installer.img"))
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp := dst + ".tmp"
	out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s: %w", src, err)
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, dst)
}
