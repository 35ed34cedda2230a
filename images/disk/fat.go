package disk

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"time"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem"
	"github.com/diskfs/go-diskfs/filesystem/fat16"
	"github.com/diskfs/go-diskfs/filesystem/fat32"
)

// FATFile is a file to put on a FAT filesystem.
type FATFile struct {
	Path   string // "EFI/BOOT/BOOTX64.EFI"
	Source string // host file, or
	Data   []byte
}

// MinFAT32Size is the smallest FAT32 go-diskfs writes reliably.
const MinFAT32Size = 40 << 20

// FATSize returns a FAT32 size that holds files with room to spare.
func FATSize(files []FATFile) (int64, error) {
	n, err := FilesSize(files)
	if err != nil {
		return 0, err
	}
	size := (n*5/4 + 8<<20 + 1<<20 - 1) &^ (1<<20 - 1)
	return max(size, 64<<20), nil
}

// WriteFAT32 writes a FAT32 filesystem at offset in f (reproducible: no
// time-derived volume id) holding files.
func WriteFAT32(f *os.File, offset, size int64, label string, files []FATFile) error {
	if size < MinFAT32Size {
		return fmt.Errorf("fat32: %d MiB is below the %d MiB minimum", size>>20, MinFAT32Size>>20)
	}
	fs, err := fat32.Create(file.New(f, false), size, offset, 512, label, true)
	if err != nil {
		return fmt.Errorf("fat32: create: %w", err)
	}
	if err := fixFAT32ClusterCount(f, offset); err != nil {
		return err
	}
	return fillFAT(fs, files)
}

// WriteFAT16 writes a FAT16 filesystem (for small images such as the
// ISO's efiboot.img, which must stay under 32 MiB for El Torito).
func WriteFAT16(f *os.File, offset, size int64, label string, files []FATFile) error {
	fs, err := fat16.Create(file.New(f, false), size, offset, 512, label, true)
	if err != nil {
		return fmt.Errorf("fat16: create: %w", err)
	}
	return fillFAT(fs, files)
}

// FilesSize sums the sizes of files.
func FilesSize(files []FATFile) (int64, error) {
	var n int64
	for _, f := range files {
		if f.Source != "" {
			st, err := os.Stat(f.Source)
			if err != nil {
				return 0, fmt.Errorf("fat: %w", err)
			}
			n += st.Size()
		} else {
			n += int64(len(f.Data))
		}
	}
	return n, nil
}

func fillFAT(fs filesystem.FileSystem, files []FATFile) error {
	made := map[string]bool{}
	buf := make([]byte, 4<<20)
	for _, ff := range files {
		p, err := CleanPath(ff.Path)
		if err != nil || p == "." {
			return fmt.Errorf("fat: bad path %q", ff.Path)
		}
		if dir := path.Dir(p); dir != "." && !made[dir] {
			if err := fs.Mkdir("/" + dir); err != nil {
				return fmt.Errorf("fat: mkdir %s: %w", dir, err)
			}
			for d := dir; d != "."; d = path.Dir(d) {
				made[d] = true
			}
		}
		if err := fillFATFile(fs, p, ff, buf); err != nil {
			return err
		}
	}
	return nil
}

func fillFATFile(fs filesystem.FileSystem, p string, ff FATFile, buf []byte) error {
	var r io.Reader = bytes.NewReader(ff.Data)
	if ff.Source != "" {
		in, err := os.Open(ff.Source)
		if err != nil {
			return fmt.Errorf("fat: %w", err)
		}
		defer in.Close()
		r = in
	}
	out, err := fs.OpenFile("/"+p, os.O_CREATE|os.O_RDWR)
	if err != nil {
		return fmt.Errorf("fat: create %s: %w", p, err)
	}
	defer out.Close()
	if _, err = io.CopyBuffer(onlyWriter{out}, r, buf); err != nil {
		if strings.Contains(err.Error(), "space") {
			return fmt.Errorf("fat: write %s: %w: %v", p, ErrTooSmall, err)
		}
		return fmt.Errorf("fat: write %s: %w", p, err)
	}
	return nil
}

// fixFAT32ClusterCount works around go-diskfs v1.9.4 sizing the FAT one
// sector short of the cluster count (fsck.fat: "129024 clusters but only
// space for 129022 FAT entries"; syslinux --install crashes on it). It
// shrinks the recorded sector count until every cluster has a FAT entry,
// in the boot sector and its backup.
func fixFAT32ClusterCount(f *os.File, offset int64) error {
	b, err := readBPB(f, offset)
	if err != nil {
		return err
	}
	total := int64(binary.LittleEndian.Uint32(b.raw[0x20:]))
	backup := int64(binary.LittleEndian.Uint16(b.raw[0x32:]))
	maxClusters := b.fatSize*b.bps/4 - 2
	if (total-b.reserved-b.fats*b.fatSize)/b.spc <= maxClusters {
		return nil
	}
	total = b.reserved + b.fats*b.fatSize + maxClusters*b.spc
	fixed := binary.LittleEndian.AppendUint32(nil, uint32(total))
	for _, sector := range []int64{0, backup} {
		if _, err := f.WriteAt(fixed, offset+sector*b.bps+0x20); err != nil {
			return fmt.Errorf("fat32: %w", err)
		}
	}
	return nil
}

// bpb is the part of a FAT boot sector (BIOS parameter block) we use.
type bpb struct {
	raw                      []byte
	bps, spc, reserved, fats int64
	rootEntries, fatSize     int64
	fat16                    bool
}

func readBPB(f *os.File, offset int64) (*bpb, error) {
	bs := make([]byte, 512)
	if _, err := f.ReadAt(bs, offset); err != nil {
		return nil, fmt.Errorf("fat: %w", err)
	}
	b := &bpb{raw: bs,
		bps:         int64(binary.LittleEndian.Uint16(bs[0x0B:])),
		spc:         int64(bs[0x0D]),
		reserved:    int64(binary.LittleEndian.Uint16(bs[0x0E:])),
		fats:        int64(bs[0x10]),
		rootEntries: int64(binary.LittleEndian.Uint16(bs[0x11:])),
		fatSize:     int64(binary.LittleEndian.Uint16(bs[0x16:])),
	}
	b.fat16 = b.fatSize != 0
	if !b.fat16 {
		b.fatSize = int64(binary.LittleEndian.Uint32(bs[0x24:]))
	}
	if b.bps == 0 || b.spc == 0 || b.fatSize == 0 {
		return nil, fmt.Errorf("fat: bad boot sector")
	}
	return b, nil
}

// StabilizeFAT sets every directory entry's times (create, access,
// write) to t, so that the FAT is the same bytes whenever it is built:
// go-diskfs and mtools (syslinux --install) stamp entries with the clock.
// Times before 1980, which FAT cannot hold, become 1980-01-01.
func StabilizeFAT(f *os.File, offset int64, t time.Time) error {
	b, err := readBPB(f, offset)
	if err != nil {
		return err
	}
	bs, bps, spc, reserved, fats, rootEntries, fat16, fatSize := b.raw, b.bps, b.spc, b.reserved, b.fats, b.rootEntries, b.fat16, b.fatSize
	fat := make([]byte, fatSize*bps)
	if _, err := f.ReadAt(fat, offset+reserved*bps); err != nil {
		return fmt.Errorf("fat: read FAT: %w", err)
	}
	entrySize := uint32(4)
	if fat16 {
		entrySize = 2
	}
	maxCluster := uint32(len(fat)) / entrySize
	next := func(c uint32) uint32 {
		if fat16 {
			n := uint32(binary.LittleEndian.Uint16(fat[c*2:]))
			if n >= 0xFFF8 {
				return 0x0FFFFFFF
			}
			return n
		}
		return binary.LittleEndian.Uint32(fat[c*4:]) & 0x0FFFFFFF
	}
	rootStart := offset + (reserved+fats*fatSize)*bps
	dataStart := rootStart + (rootEntries*32+bps-1)/bps*bps
	clusterBytes := spc * bps
	t = t.UTC()
	if t.Year() < 1980 {
		t = time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	date := uint16((t.Year()-1980)<<9 | int(t.Month())<<5 | t.Day())
	tod := uint16(t.Hour()<<11 | t.Minute()<<5 | t.Second()/2)

	seen := map[uint32]bool{}
	var walk func(cluster uint32) error
	// fixBlock rewrites the entries of one directory block and returns
	// its subdirectories.
	fixBlock := func(buf []byte, at int64) ([]uint32, error) {
		var subdirs []uint32
		for i := 0; i+32 <= len(buf); i += 32 {
			e := buf[i : i+32]
			if e[0] == 0 {
				break
			}
			if e[0] == 0xE5 || e[0x0B] == 0x0F {
				continue
			}
			e[0x0D] = 0
			binary.LittleEndian.PutUint16(e[0x0E:], tod)
			binary.LittleEndian.PutUint16(e[0x10:], date)
			binary.LittleEndian.PutUint16(e[0x12:], date)
			binary.LittleEndian.PutUint16(e[0x16:], tod)
			binary.LittleEndian.PutUint16(e[0x18:], date)
			if e[0x0B]&0x10 != 0 && e[0] != '.' {
				sub := uint32(binary.LittleEndian.Uint16(e[0x14:]))<<16 | uint32(binary.LittleEndian.Uint16(e[0x1A:]))
				subdirs = append(subdirs, sub)
			}
		}
		if _, err := f.WriteAt(buf, at); err != nil {
			return nil, fmt.Errorf("fat: %w", err)
		}
		return subdirs, nil
	}
	walkAll := func(subdirs []uint32) error {
		for _, s := range subdirs {
			if err := walk(s); err != nil {
				return err
			}
		}
		return nil
	}
	walk = func(cluster uint32) error {
		for c := cluster; c >= 2 && c < 0x0FFFFFF8; c = next(c) {
			if c >= maxCluster || seen[c] {
				return fmt.Errorf("fat: bad cluster chain at %d", c)
			}
			seen[c] = true
			buf := make([]byte, clusterBytes)
			at := dataStart + int64(c-2)*clusterBytes
			if _, err := f.ReadAt(buf, at); err != nil {
				return fmt.Errorf("fat: %w", err)
			}
			subdirs, err := fixBlock(buf, at)
			if err != nil {
				return err
			}
			if err := walkAll(subdirs); err != nil {
				return err
			}
		}
		return nil
	}
	if fat16 {
		buf := make([]byte, rootEntries*32)
		if _, err := f.ReadAt(buf, rootStart); err != nil {
			return fmt.Errorf("fat: %w", err)
		}
		subdirs, err := fixBlock(buf, rootStart)
		if err != nil {
			return err
		}
		return walkAll(subdirs)
	}
	return walk(binary.LittleEndian.Uint32(bs[0x2C:]))
}
