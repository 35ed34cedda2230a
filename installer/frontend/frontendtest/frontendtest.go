// Package frontendtest builds what frontend installer tests need: a small
// frontend appliance image (GPT, ESP with syslinux for BIOS and UEFI, an
// ext4 root), a machine with the NICs a test names, and answers that
// pass validation.
package frontendtest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"ironbark/images/disk"
	"ironbark/installer/frontend"
	"ironbark/internal/lab"
)

// ImageSpec says what goes into a lab appliance image.
type ImageSpec struct {
	Kernel, Initrd string // "" : a placeholder kernel (the image is never booted)
	Cmdline        string
	Root           map[string]string // extra files in the root filesystem
}

// Image builds a lab frontend appliance image in dir.
func Image(t testing.TB, dir string, s ImageSpec) string {
	t.Helper()
	lab.Require(t, "syslinux")
	out, err := BuildImage(dir, s)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// BuildImage is Image for programs outside tests (cmd/ironbark-rack).
func BuildImage(dir string, s ImageSpec) (string, error) {
	root := filepath.Join(dir, "appliance-root")
	files := map[string]string{"etc/ironbark-appliance": "frontend\n"}
	for k, v := range s.Root {
		files[k] = v
	}
	for p, c := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return "", err
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			return "", err
		}
	}
	if s.Kernel == "" {
		s.Kernel = filepath.Join(dir, "vmlinuz")
		if err := os.WriteFile(s.Kernel, []byte("placeholder kernel"), 0o644); err != nil {
			return "", err
		}
	}
	out := filepath.Join(dir, "frontend.img")
	if _, err := disk.BuildDisk(context.Background(), out, disk.DiskSpec{
		Boot: &disk.Boot{Kernel: s.Kernel, Initrd: s.Initrd, Cmdline: s.Cmdline},
		Root: disk.DirSource(root), FS: disk.FSOptions{Time: time.Unix(1700000000, 0), Seed: "lab-frontend"},
	}); err != nil {
		return "", fmt.Errorf("lab frontend image: %w", err)
	}
	return out, nil
}

// Machine is a machine whose NICs and disks a test chooses.
type Machine struct {
	Nics  []frontend.NIC
	Drive []frontend.Disk
}

func (m Machine) NICs() ([]frontend.NIC, error)   { return m.Nics, nil }
func (m Machine) Disks() ([]frontend.Disk, error) { return m.Drive, nil }

// TwoNICs has eth0 (public, link up) and eth1 (private, link up).
func TwoNICs() Machine {
	return Machine{Nics: []frontend.NIC{{Name: "eth0", MAC: "52:54:00:aa:00:01", Carrier: true},
		{Name: "eth1", MAC: "52:54:00:aa:00:02", Carrier: true}}}
}

// SSHKey is a well-formed ed25519 public key line.
const SSHKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f admin@lab"

// Answers are valid answers for TwoNICs installing onto diskPath.
func Answers(diskPath string) frontend.Answers {
	a := frontend.Defaults()
	a.Cluster.Name, a.Cluster.FQDN, a.Cluster.Contact = "lab", "frontend.lab.example", "ops@lab.example"
	a.Public.Interface, a.Public.Address, a.Public.Netmask, a.Public.Gateway = "eth0", "192.0.2.10", "255.255.255.0", "192.0.2.1"
	a.Public.DNS = []string{"192.0.2.53"}
	a.Private.Interface = "eth1"
	a.Time.NTP = []string{"pool.ntp.org"}
	a.Admin.Password, a.Admin.SSHKey = "correct horse battery", SSHKey
	a.Disk.Device = diskPath
	return a
}

// BlankDisk makes a sparse disk image file of size bytes.
func BlankDisk(t testing.TB, dir string, size int64) string {
	t.Helper()
	p := filepath.Join(dir, "target.img")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	return p
}
