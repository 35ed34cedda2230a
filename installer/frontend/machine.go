package frontend

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// NIC is a network interface of the machine being installed.
type NIC struct {
	Name    string
	MAC     string
	Carrier bool // link detected
}

// Disk is a disk the frontend could be installed on.
type Disk struct {
	Path  string // /dev/vda, or an image file
	Size  int64
	Model string
}

// Machine is what the installer needs to know of the hardware.
type Machine interface {
	NICs() ([]NIC, error)
	Disks() ([]Disk, error)
}

// SysMachine reads the NICs and disks from sysfs.
type SysMachine struct {
	Sys string // "" means /sys
	Dev string // "" means /dev
}

func (m SysMachine) sys() string {
	if m.Sys == "" {
		return "/sys"
	}
	return m.Sys
}

func readTrim(p string) string {
	b, _ := os.ReadFile(p)
	return strings.TrimSpace(string(b))
}

// NICs lists the Ethernet interfaces (not loopback, bridges or veths' peers
// that have no device).
func (m SysMachine) NICs() ([]NIC, error) {
	dir := filepath.Join(m.sys(), "class/net")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list NICs: %w", err)
	}
	var out []NIC
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		if readTrim(filepath.Join(p, "type")) != "1" { // ARPHRD_ETHER
			continue
		}
		if _, err := os.Stat(filepath.Join(p, "bridge")); err == nil {
			continue
		}
		out = append(out, NIC{Name: e.Name(), MAC: readTrim(filepath.Join(p, "address")),
			Carrier: readTrim(filepath.Join(p, "carrier")) == "1"})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Disks lists whole disks (no partitions, loop, ram or optical devices).
func (m SysMachine) Disks() ([]Disk, error) {
	dir := filepath.Join(m.sys(), "block")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list disks: %w", err)
	}
	dev := m.Dev
	if dev == "" {
		dev = "/dev"
	}
	var out []Disk
	for _, e := range ents {
		n := e.Name()
		if strings.HasPrefix(n, "loop") || strings.HasPrefix(n, "ram") || strings.HasPrefix(n, "sr") ||
			strings.HasPrefix(n, "zram") || strings.HasPrefix(n, "dm-") || strings.HasPrefix(n, "md") {
			continue
		}
		p := filepath.Join(dir, n)
		sectors, _ := strconv.ParseInt(readTrim(filepath.Join(p, "size")), 10, 64)
		if sectors == 0 {
			continue
		}
		model := readTrim(filepath.Join(p, "device/model"))
		if model == "" && strings.HasPrefix(n, "vd") {
			model = "virtio disk" // virtio-blk has no model, only a PCI vendor id
		}
		out = append(out, Disk{Path: filepath.Join(dev, n), Size: sectors * 512, Model: model})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, nil
}

// FindDisk finds the target among the machine's disks; a regular file (a
// disk image, in tests and for building frontend images) is taken as it is.
func FindDisk(m Machine, path string) (Disk, error) {
	ds, err := m.Disks()
	if err != nil {
		return Disk{}, err
	}
	for _, d := range ds {
		if d.Path == path {
			return d, nil
		}
	}
	st, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		var names []string
		for _, d := range ds {
			names = append(names, d.Path)
		}
		return Disk{}, fmt.Errorf("no such disk (this machine has: %s)", orNone(names))
	case err != nil:
		return Disk{}, err
	case st.Mode().IsRegular():
		return Disk{Path: path, Size: st.Size(), Model: "image file"}, nil
	}
	return Disk{}, fmt.Errorf("%s is not a whole disk", path)
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

// WithDiskFiles adds disk image files to a machine's disks, so the
// frontend can be installed into an image (for a VM, or a test).
func WithDiskFiles(m Machine, files ...string) Machine {
	if len(files) == 0 {
		return m
	}
	return fileDisks{m, files}
}

type fileDisks struct {
	Machine
	files []string
}

func (f fileDisks) Disks() ([]Disk, error) {
	ds, err := f.Machine.Disks()
	if err != nil {
		return nil, err
	}
	for _, p := range f.files {
		st, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("disk image: %w", err)
		}
		if !st.Mode().IsRegular() {
			return nil, fmt.Errorf("disk image %s: not a regular file", p)
		}
		ds = append(ds, Disk{Path: p, Size: st.Size(), Model: "image file"})
	}
	return ds, nil
}

// WithoutDisk hides the install medium (a USB stick holding the ISO) from
// the disks the frontend can be installed on.
func WithoutDisk(m Machine, dev string) Machine { return withoutDisk{m, dev} }

type withoutDisk struct {
	Machine
	dev string
}

func (w withoutDisk) Disks() ([]Disk, error) {
	ds, err := w.Machine.Disks()
	if err != nil {
		return nil, err
	}
	var out []Disk
	for _, d := range ds {
		if !partOf(w.dev, d.Path) {
			out = append(out, d)
		}
	}
	return out, nil
}

// partOf says whether dev is disk or one of its partitions (sdb1, nvme0n1p2).
func partOf(dev, disk string) bool {
	rest, ok := strings.CutPrefix(dev, disk)
	if !ok {
		return false
	}
	rest = strings.TrimPrefix(rest, "p")
	for _, r := range rest {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}
