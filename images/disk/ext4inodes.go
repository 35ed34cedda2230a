package disk

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/diskfs/go-diskfs/filesystem/ext4/crc"
)

// ext4Geometry is what walking an ext4 filesystem's inode tables needs
// from its superblock.
type ext4Geometry struct {
	blockSize, blocksPerGroup, inodesPerGroup int64
	firstDataBlock, blocks, inodeSize         int64
	descSize, groups, firstIno                int64
	csum                                      bool // metadata_csum
	csumSeed                                  uint32
}

// readExt4Geometry reads the superblock (1024 bytes at offset+1024).
func readExt4Geometry(sb []byte) (ext4Geometry, error) {
	if binary.LittleEndian.Uint16(sb[0x38:]) != 0xEF53 {
		return ext4Geometry{}, errors.New("no ext4 superblock")
	}
	g := ext4Geometry{
		blockSize:      int64(1024) << binary.LittleEndian.Uint32(sb[0x18:]),
		blocksPerGroup: int64(binary.LittleEndian.Uint32(sb[0x20:])),
		inodesPerGroup: int64(binary.LittleEndian.Uint32(sb[0x28:])),
		firstDataBlock: int64(binary.LittleEndian.Uint32(sb[0x14:])),
		blocks:         int64(binary.LittleEndian.Uint32(sb[0x4:])) | int64(binary.LittleEndian.Uint32(sb[0x150:]))<<32,
		inodeSize:      int64(binary.LittleEndian.Uint16(sb[0x58:])),
		firstIno:       int64(binary.LittleEndian.Uint32(sb[0x54:])),
		descSize:       32,
	}
	incompat := binary.LittleEndian.Uint32(sb[0x60:])
	g.csum = binary.LittleEndian.Uint32(sb[0x64:])&0x400 != 0
	if incompat&0x80 != 0 {
		g.descSize = int64(binary.LittleEndian.Uint16(sb[0xFE:]))
	}
	if incompat&0x2000 != 0 {
		g.csumSeed = binary.LittleEndian.Uint32(sb[0x270:])
	} else {
		g.csumSeed = crc.CRC32c(0xffffffff, sb[0x68:0x78])
	}
	if g.blocksPerGroup == 0 || g.inodesPerGroup == 0 || g.inodeSize < 128 || g.descSize < 32 {
		return ext4Geometry{}, errors.New("ext4 superblock with a zero group or inode size")
	}
	g.groups = (g.blocks - g.firstDataBlock + g.blocksPerGroup - 1) / g.blocksPerGroup
	return g, nil
}

// inodeChecksum is metadata_csum's checksum of inode num (in with its
// checksum fields zeroed).
func (g ext4Geometry) inodeChecksum(seed uint32, num int64, in []byte) uint32 {
	c := crc.CRC32c(seed, binary.LittleEndian.AppendUint32(nil, uint32(num)))
	c = crc.CRC32c(c, in[0x64:0x68]) // generation
	return crc.CRC32c(c, in)
}

// putInodeChecksum stores c in the inode's two checksum halves (the high
// one only where the inode's extra space holds it); c 0 clears them.
func putInodeChecksum(in []byte, c uint32) {
	binary.LittleEndian.PutUint16(in[0x7C:], uint16(c))
	if len(in) > 0x84 && binary.LittleEndian.Uint16(in[0x80:]) >= 4 {
		binary.LittleEndian.PutUint16(in[0x82:], uint16(c>>16))
	}
}

// walkInodes calls fn with each used inode (by the group descriptors'
// unused counts; the reserved ones before firstIno too, unless all zero)
// and writes back each inode table in which fn changed something.
func walkInodes(f interface {
	io.ReaderAt
	io.WriterAt
}, offset int64, g ext4Geometry, fn func(num int64, in []byte) bool) error {
	gdt := make([]byte, g.groups*g.descSize)
	if _, err := f.ReadAt(gdt, offset+(g.firstDataBlock+1)*g.blockSize); err != nil {
		return fmt.Errorf("read group descriptors: %w", err)
	}
	for grp := int64(0); grp < g.groups; grp++ {
		d := gdt[grp*g.descSize:]
		table := int64(binary.LittleEndian.Uint32(d[0x8:]))
		unused := int64(binary.LittleEndian.Uint16(d[0x1C:]))
		if g.descSize >= 64 {
			table |= int64(binary.LittleEndian.Uint32(d[0x28:])) << 32
			unused |= int64(binary.LittleEndian.Uint16(d[0x32:])) << 16
		}
		used := g.inodesPerGroup - unused
		if used <= 0 {
			continue
		}
		buf := make([]byte, used*g.inodeSize)
		at := offset + table*g.blockSize
		if _, err := f.ReadAt(buf, at); err != nil {
			return fmt.Errorf("read inode table %d: %w", grp, err)
		}
		changed := false
		for i := int64(0); i < used; i++ {
			in := buf[i*g.inodeSize : (i+1)*g.inodeSize]
			num := grp*g.inodesPerGroup + i + 1
			if binary.LittleEndian.Uint16(in[0:]) == 0 && num >= g.firstIno {
				continue // free
			}
			if allZero(in) {
				continue
			}
			if fn(num, in) {
				changed = true
			}
		}
		if changed {
			if _, err := f.WriteAt(buf, at); err != nil {
				return fmt.Errorf("write inode table %d: %w", grp, err)
			}
		}
	}
	return nil
}

// ErrExt4Checksums is returned by FillInodeChecksums for a filesystem
// that has metadata_csum: its checksums are real and stay as they are.
var ErrExt4Checksums = errors.New("ext4 filesystem has metadata_csum")

// FillInodeChecksums fills (fill) or clears the inode checksum fields of
// the ext4 filesystem at offset in f, which must not have metadata_csum
// (ErrExt4Checksums otherwise: nothing is changed). Without the feature
// Linux and e2fsck ignore those fields and WriteExt4 leaves them zero,
// but go-diskfs (v1.9.4) verifies inode checksums whatever the features
// say and refuses such a filesystem; filled, go-diskfs can edit it (the
// installer writes root's SSH keys so), and cleared again, it is as
// WriteExt4 made it.
func FillInodeChecksums(f interface {
	io.ReaderAt
	io.WriterAt
}, offset int64, fill bool) error {
	sb := make([]byte, 1024)
	if _, err := f.ReadAt(sb, offset+1024); err != nil {
		return fmt.Errorf("ext4 inode checksums: read superblock: %w", err)
	}
	g, err := readExt4Geometry(sb)
	if err != nil {
		return fmt.Errorf("ext4 inode checksums: %w", err)
	}
	if g.csum {
		return ErrExt4Checksums
	}
	// go-diskfs's seed without metadata_csum: s_checksum_seed as it is.
	seed := binary.LittleEndian.Uint32(sb[0x270:])
	err = walkInodes(f, offset, g, func(num int64, in []byte) bool {
		putInodeChecksum(in, 0)
		if fill {
			putInodeChecksum(in, g.inodeChecksum(seed, num, in))
		}
		return true
	})
	if err != nil {
		return fmt.Errorf("ext4 inode checksums: %w", err)
	}
	return nil
}
