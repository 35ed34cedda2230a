package frontend

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"unicode/utf16"

	"github.com/klauspost/compress/zstd"
)

// The appliance image is a whole-disk GPT image (images/disk, the
// appliance builder): its ESP carries the boot loaders (syslinux for
// BIOS, BOOTX64.EFI for UEFI) and its partitions are addressed by PARTUUID.
// The installer lays it down at the same offsets, so every address inside
// it stays true, and adds the data partition after it.

const sector = 512

// headLen is the part of the image held back until the end of the install:
// the protective MBR, the boot code and the primary GPT live there.
const headLen = 1 << 20

// ImagePartition is one partition of the appliance image.
type ImagePartition struct {
	Type, GUID string // upper-case textual GUIDs
	Name       string
	First      uint64 // LBA
	Last       uint64 // LBA, inclusive
	Attributes uint64
}

// ImageLayout is what the appliance image's GPT says.
type ImageLayout struct {
	Size       int64 // bytes (the backup GPT header is its last sector)
	DiskGUID   string
	Partitions []ImagePartition
	BootCode   []byte // the first 440 bytes: BIOS boot code
}

// guid reads a GPT mixed-endian GUID.
func guid(b []byte) string {
	return fmt.Sprintf("%08X-%04X-%04X-%X-%X", binary.LittleEndian.Uint32(b[0:4]), binary.LittleEndian.Uint16(b[4:6]),
		binary.LittleEndian.Uint16(b[6:8]), b[8:10], b[10:16])
}

// ParseLayout reads the GPT from the first MiB of a disk image.
func ParseLayout(head []byte) (ImageLayout, error) {
	var l ImageLayout
	if len(head) < 2*sector || head[510] != 0x55 || head[511] != 0xaa {
		return l, errors.New("appliance image: no MBR signature: not a disk image")
	}
	h := head[sector : 2*sector]
	if string(h[0:8]) != "EFI PART" {
		return l, errors.New("appliance image: no GPT header at LBA 1 (the installer lays down GPT images)")
	}
	backup := binary.LittleEndian.Uint64(h[32:40])
	entriesLBA := binary.LittleEndian.Uint64(h[72:80])
	n := binary.LittleEndian.Uint32(h[80:84])
	size := binary.LittleEndian.Uint32(h[84:88])
	if size < 128 || n > 1024 || entriesLBA < 2 {
		return l, fmt.Errorf("appliance image: implausible GPT (%d entries of %d bytes at LBA %d)", n, size, entriesLBA)
	}
	end := entriesLBA*sector + uint64(n)*uint64(size)
	if end > uint64(len(head)) {
		return l, errors.New("appliance image: GPT entries lie beyond the first MiB")
	}
	l.Size = int64(backup+1) * sector
	l.DiskGUID = guid(h[56:72])
	l.BootCode = append([]byte(nil), head[:440]...)
	for i := uint32(0); i < n; i++ {
		e := head[entriesLBA*sector+uint64(i)*uint64(size):]
		if bytes.Equal(e[0:16], make([]byte, 16)) {
			continue
		}
		u := make([]uint16, 36)
		for j := range u {
			u[j] = binary.LittleEndian.Uint16(e[56+2*j:])
		}
		name := utf16.Decode(u)
		for k, r := range name {
			if r == 0 {
				name = name[:k]
				break
			}
		}
		p := ImagePartition{Type: guid(e[0:16]), GUID: guid(e[16:32]), First: binary.LittleEndian.Uint64(e[32:40]),
			Last: binary.LittleEndian.Uint64(e[40:48]), Attributes: binary.LittleEndian.Uint64(e[48:56]), Name: string(name)}
		if p.Last < p.First || int64(p.Last+1)*sector > l.Size {
			return l, fmt.Errorf("appliance image: partition %d (%s) lies outside the image", i+1, p.Name)
		}
		l.Partitions = append(l.Partitions, p)
	}
	if len(l.Partitions) == 0 {
		return l, errors.New("appliance image: no partitions")
	}
	return l, nil
}

// Image is an appliance image file, raw or zstd-compressed.
type Image struct {
	Path string
}

// open returns the image's bytes from the start.
func (im Image) open() (io.ReadCloser, error) {
	f, err := os.Open(im.Path)
	if err != nil {
		return nil, fmt.Errorf("appliance image: %w", err)
	}
	br := bufio.NewReaderSize(f, 1<<20)
	magic, _ := br.Peek(4)
	if bytes.Equal(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}) {
		zr, err := zstd.NewReader(br)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("appliance image: %w", err)
		}
		return struct {
			io.Reader
			io.Closer
		}{zr, closers{zr.IOReadCloser(), f}}, nil
	}
	return struct {
		io.Reader
		io.Closer
	}{br, f}, nil
}

type closers []io.Closer

func (cs closers) Close() error {
	var err error
	for _, c := range cs {
		if e := c.Close(); e != nil && err == nil {
			err = e
		}
	}
	return err
}

// Layout reads the image's partition table.
func (im Image) Layout() (ImageLayout, error) {
	r, err := im.open()
	if err != nil {
		return ImageLayout{}, err
	}
	defer r.Close()
	head := make([]byte, headLen)
	if _, err := io.ReadFull(r, head); err != nil {
		return ImageLayout{}, fmt.Errorf("appliance image %s: %w", im.Path, err)
	}
	return ParseLayout(head)
}

// Compressed says whether the image file is zstd (the form the ISO
// carries it in).
func (im Image) Compressed() (bool, error) {
	f, err := os.Open(im.Path)
	if err != nil {
		return false, fmt.Errorf("appliance image: %w", err)
	}
	defer f.Close()
	magic := make([]byte, 4)
	if _, err := io.ReadFull(f, magic); err != nil {
		return false, fmt.Errorf("appliance image %s: %w", im.Path, err)
	}
	return bytes.Equal(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}), nil
}

// Compress writes the raw image zstd-compressed to dst (the image is
// mostly the empty space of its filesystems: it shrinks several times).
func (im Image) Compress(dst string) error {
	if _, err := im.Layout(); err != nil {
		return err
	}
	in, err := os.Open(im.Path)
	if err != nil {
		return fmt.Errorf("appliance image: %w", err)
	}
	defer in.Close()
	f, err := os.Create(dst)
	if err != nil {
		return fmt.Errorf("appliance image: %w", err)
	}
	zw, err := zstd.NewWriter(f)
	if err == nil {
		_, err = io.Copy(zw, in)
		if cerr := zw.Close(); err == nil {
			err = cerr
		}
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(dst)
		return fmt.Errorf("compress %s: %w", im.Path, err)
	}
	return nil
}
