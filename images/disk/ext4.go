package disk

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"time"

	"github.com/google/uuid"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/ext4"
	"github.com/diskfs/go-diskfs/filesystem/ext4/crc"
)

// FSOptions tune a filesystem image.
type FSOptions struct {
	Label string
	// Seed derives the filesystem UUID and hash seed; the same seed and
	// source give the same bytes. Empty means "ironbark".
	Seed string
	// Time stamps everything the source does not date (superblock, root,
	// lost+found, inode change times). Zero means the Unix epoch.
	Time time.Time
	// KeepOwners keeps uid/gid from the source; otherwise all is root's
	// (what a rootfs built by an unprivileged user needs).
	KeepOwners bool
	// ClampTimes stamps files modified after Time with Time (what
	// SOURCE_DATE_EPOCH asks of a tree built now: dpkg, initramfs-tools
	// and post scripts leave the build's wall-clock time on what they
	// write).
	ClampTimes bool
	Logger     *slog.Logger
}

func (o *FSOptions) defaults() {
	if o.Seed == "" {
		o.Seed = "ironbark"
	}
	if o.Time.IsZero() {
		o.Time = time.Unix(0, 0)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// Result says what went into a filesystem.
type Result struct {
	Usage
	Size            int64    // filesystem size in bytes
	HardLinksCopied int      // hard links written as independent copies
	Skipped         []string // device nodes, FIFOs, sockets: not representable, left out
}

// ErrTooSmall reports a source that does not fit the requested size.
var ErrTooSmall = errors.New("source larger than the image")

// Ext4Size computes a filesystem size for a source: its content, inode
// tables, journal and 25% headroom, rounded up to a MiB, at least 64 MiB.
func Ext4Size(u Usage) int64 {
	inodes := int64(u.Files+u.Dirs+u.Symlinks+u.Others) + 16
	data := u.Blocks4K*4096 + int64(u.Dirs)*4096 + int64(u.Symlinks)*4096
	meta := inodes*256*4 + 64<<20 // inode tables at 4x the count, journal, group metadata
	size := (data + meta) * 5 / 4
	size = (size + 1<<20 - 1) &^ (1<<20 - 1)
	return ext4Round(max(size, 64<<20), true)
}

// ext4Round keeps a filesystem's last block group from being a sliver.
// go-diskfs (1 KiB blocks below 512 MiB, 8 MiB groups; 4 KiB blocks
// above, 128 MiB groups) puts each flex group's bitmaps and inode tables
// in its first group; a last group of a few blocks that starts a flex
// group cannot hold them, and Linux refuses the filesystem ("Inode table
// for group 8 not in group"), as a 1025 MiB one was. A last group under
// an eighth of a group is filled (up, for a size computed from content)
// or dropped (down, for a size a partition imposes), as mke2fs drops it.
func ext4Round(size int64, up bool) int64 {
	group := int64(8 << 20)
	if size >= 512<<20 {
		group = 128 << 20
	}
	rem := size % group
	if size <= group || rem == 0 || rem >= group/8 {
		return size
	}
	if up {
		return size - rem + group/8
	}
	return size - rem
}

// fits checks a source against a filesystem size before anything is
// written, so "too small" is a clear error rather than a failed allocation
// deep in go-diskfs.
func fits(u Usage, size int64) error {
	inodeTables := size / (16 * 1024) * 256 // ext4 default: one inode per 16 KiB
	overhead := inodeTables + min(size/64, 128<<20) + size/100 + 4<<20
	need := u.Blocks4K*4096 + int64(u.Dirs+u.Symlinks)*4096
	if need+overhead > size {
		return fmt.Errorf("%w: content needs about %d MiB, image is %d MiB", ErrTooSmall, (need+overhead)>>20, size>>20)
	}
	if int64(u.Files+u.Dirs+u.Symlinks+16) > size/(16*1024) {
		return fmt.Errorf("%w: %d files, only %d inodes", ErrTooSmall, u.Files+u.Dirs+u.Symlinks, size/(16*1024))
	}
	return nil
}

// WriteExt4 writes an ext4 filesystem of size bytes at offset in f from
// src. Use size 0 to compute it (see Ext4Size).
func WriteExt4(ctx context.Context, f *os.File, offset, size int64, src Source, o FSOptions) (*Result, error) {
	o.defaults()
	u, err := Measure(ctx, src)
	if err != nil {
		return nil, err
	}
	if size == 0 {
		size = Ext4Size(u)
	} else {
		size = ext4Round(size, false)
	}
	if err := fits(u, size); err != nil {
		return nil, err
	}
	if st, err := f.Stat(); err == nil && st.Mode().IsRegular() && st.Size() < offset+size { // a block device has its size
		if err := f.Truncate(offset + size); err != nil {
			return nil, fmt.Errorf("ext4: %w", err)
		}
	}
	fsUUID := ext4UUID(o)
	efs, err := ext4.Create(file.New(f, false), size, offset, 512, &ext4.Params{UUID: &fsUUID, VolumeName: o.Label})
	if err != nil {
		return nil, fmt.Errorf("ext4: create: %w", err)
	}
	res := &Result{Usage: u, Size: size}
	w := &ext4Writer{fs: efs, o: o, res: res, written: map[string]fs.FileMode{}, meta: map[uint32]inodeMeta{}}
	// go-diskfs makes no lost+found; e2fsck wants one.
	if err := efs.Mkdir("lost+found"); err != nil {
		return nil, fmt.Errorf("ext4: mkdir lost+found: %w", err)
	}
	lf, err := w.inodeOf("lost+found")
	if err != nil {
		return nil, err
	}
	w.written["lost+found"] = fs.ModeDir | 0o700
	w.meta[lf] = inodeMeta{perm: 0o700, mtime: o.Time}
	w.meta[2] = inodeMeta{perm: 0o755, mtime: o.Time}
	if err := src.Walk(ctx, w.add); err != nil {
		return nil, err
	}
	if err := stabilizeExt4(f, offset, o.Seed, o.Time, w.meta); err != nil {
		return nil, fmt.Errorf("ext4: %w", err)
	}
	if len(res.Skipped) > 0 {
		o.Logger.Info("ext4: skipped entries go-diskfs cannot write (device nodes come from devtmpfs at boot)",
			"count", len(res.Skipped), "first", res.Skipped[0])
	}
	return res, nil
}

// inodeMeta is what the source says about a file; it is written straight
// into the inode table after go-diskfs is done (see stabilizeExt4), which
// saves three path walks (Chmod, Chown, Chtimes) per file.
type inodeMeta struct {
	perm     uint16 // permission bits incl. setuid/setgid/sticky
	uid, gid uint32
	mtime    time.Time
}

type ext4Writer struct {
	fs      *ext4.FileSystem
	o       FSOptions
	res     *Result
	written map[string]fs.FileMode
	meta    map[uint32]inodeMeta
	buf     []byte
}

func unixPerm(m fs.FileMode) uint16 {
	p := uint16(m.Perm())
	if m&fs.ModeSetuid != 0 {
		p |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		p |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		p |= 0o1000
	}
	return p | uint16(m&0o7000)
}

func (w *ext4Writer) record(ino uint32, e *Entry) {
	uid, gid := w.owner(e)
	mtime := e.ModTime
	if w.o.ClampTimes && mtime.After(w.o.Time) {
		mtime = w.o.Time
	}
	w.meta[ino] = inodeMeta{perm: unixPerm(e.Mode), uid: uint32(uid), gid: uint32(gid), mtime: mtime}
}

// inodeOf returns the inode number of a path in the image.
func (w *ext4Writer) inodeOf(p string) (uint32, error) {
	fi, err := w.fs.Stat(p)
	if err != nil {
		return 0, fmt.Errorf("ext4: stat %s: %w", p, err)
	}
	st, ok := fi.Sys().(*ext4.StatT)
	if !ok {
		return 0, fmt.Errorf("ext4: stat %s: no inode number", p)
	}
	return st.Ino, nil
}

func (w *ext4Writer) owner(e *Entry) (int, int) {
	if w.o.KeepOwners {
		return e.UID, e.GID
	}
	return 0, 0
}

func (w *ext4Writer) add(e *Entry, r io.Reader) error {
	p, err := CleanPath(e.Path)
	if err != nil {
		return err
	}
	if p == "." {
		w.record(2, e) // the root directory is inode 2
		return nil
	}
	if parent := path.Dir(p); parent != "." {
		if m, ok := w.written[parent]; ok && !m.IsDir() {
			return fmt.Errorf("ext4: %s: parent %s is not a directory", p, parent)
		}
	}
	if _, dup := w.written[p]; dup && !(e.Mode.IsDir() && p == "lost+found") {
		return fmt.Errorf("ext4: %s appears twice in the source", p)
	}
	var ino uint32
	switch {
	case e.HardLink != "":
		m, ok := w.written[e.HardLink]
		if !ok || !m.IsRegular() {
			return fmt.Errorf("ext4: hard link %s: target %s is not an earlier regular file", p, e.HardLink)
		}
		src, err := w.fs.OpenFile(e.HardLink, os.O_RDONLY)
		if err != nil {
			return fmt.Errorf("ext4: hard link %s: %w", p, err)
		}
		ino, err = w.writeFile(p, src)
		src.Close()
		if err != nil {
			return err
		}
		w.res.HardLinksCopied++
		e.Mode = m
	case e.Mode.IsRegular():
		if ino, err = w.writeFile(p, r); err != nil {
			return err
		}
	case e.Mode.IsDir():
		if _, ok := w.written[p]; !ok {
			if err := w.fs.Mkdir(p); err != nil {
				return fmt.Errorf("ext4: mkdir %s: %w", p, err)
			}
		}
		if ino, err = w.inodeOf(p); err != nil {
			return err
		}
	case e.Mode.Type() == fs.ModeSymlink:
		if err := w.fs.Symlink(e.Linkname, p); err != nil {
			return fmt.Errorf("ext4: symlink %s: %w", p, err)
		}
		if ino, err = w.inodeOf(p); err != nil {
			return err
		}
		e.Mode = fs.ModeSymlink | 0o777
	default:
		w.res.Skipped = append(w.res.Skipped, p)
		return nil
	}
	w.written[p] = e.Mode
	w.record(ino, e)
	return nil
}

func (w *ext4Writer) writeFile(p string, r io.Reader) (uint32, error) {
	out, err := w.fs.OpenFile(p, os.O_CREATE|os.O_RDWR)
	if err != nil {
		return 0, fmt.Errorf("ext4: create %s: %w", p, err)
	}
	defer out.Close()
	fi, err := out.Stat()
	if err != nil {
		return 0, fmt.Errorf("ext4: stat %s: %w", p, err)
	}
	st, ok := fi.Sys().(*ext4.StatT)
	if !ok {
		return 0, fmt.Errorf("ext4: stat %s: no inode number", p)
	}
	if w.buf == nil {
		w.buf = make([]byte, 16<<20)
	}
	if r != nil {
		if _, err := io.CopyBuffer(onlyWriter{out}, r, w.buf); err != nil {
			return 0, fmt.Errorf("ext4: write %s: %w", p, err)
		}
	}
	return st.Ino, nil
}

// onlyWriter hides ReadFrom so io.CopyBuffer uses our large buffer:
// go-diskfs extends a file's extents per Write call.
type onlyWriter struct{ w io.Writer }

func (o onlyWriter) Write(p []byte) (int, error) { return o.w.Write(p) }

// stabilizeExt4 makes what go-diskfs stamps with time.Now or randomness
// deterministic: superblock times and hash seed (primary and backups),
// and the change/creation times of every used inode (plus all times of
// the reserved inodes: resize inode, journal), with checksums redone.
// go-diskfs writes linear directories only, so the hash seed can change
// after the fact.
func stabilizeExt4(f *os.File, offset int64, seed string, t time.Time, meta map[uint32]inodeMeta) error {
	sb := make([]byte, 1024)
	if _, err := f.ReadAt(sb, offset+1024); err != nil {
		return fmt.Errorf("stabilize: read superblock: %w", err)
	}
	g, err := readExt4Geometry(sb)
	if err != nil {
		return fmt.Errorf("stabilize: %w", err)
	}
	hashSeed := SeedUUID(seed, "ext4-hash-seed")
	secs := t.Unix()
	fixSB := func(b []byte) {
		for _, off := range []int{0x30, 0x40, 0x108} { // write, last check, mkfs
			binary.LittleEndian.PutUint32(b[off:], uint32(secs))
		}
		binary.LittleEndian.PutUint32(b[0x2C:], 0) // never mounted
		b[0x274], b[0x275], b[0x276], b[0x277] = 0, byte(secs>>32), byte(secs>>32), byte(secs>>32)
		copy(b[0xEC:0xFC], hashSeed[:])
		if g.csum {
			binary.LittleEndian.PutUint32(b[0x3FC:], crc.CRC32c(0xffffffff, b[:0x3FC]))
		}
	}
	fixSB(sb)
	if _, err := f.WriteAt(sb, offset+1024); err != nil {
		return fmt.Errorf("stabilize: %w", err)
	}
	// Backup superblocks carry their group number at 0x5A.
	for grp := int64(1); grp < g.groups; grp++ {
		at := offset + (grp*g.blocksPerGroup+g.firstDataBlock)*g.blockSize
		b := make([]byte, 1024)
		if _, err := f.ReadAt(b, at); err != nil {
			continue
		}
		// A backup has the magic and the primary's UUID (go-diskfs leaves
		// s_block_group_nr at 0).
		if binary.LittleEndian.Uint16(b[0x38:]) != 0xEF53 || string(b[0x68:0x78]) != string(sb[0x68:0x78]) {
			continue
		}
		fixSB(b)
		if _, err := f.WriteAt(b, at); err != nil {
			return fmt.Errorf("stabilize: backup superblock %d: %w", grp, err)
		}
	}
	err = walkInodes(f, offset, g, func(num int64, in []byte) bool {
		extra := int64(binary.LittleEndian.Uint16(in[0x80:]))
		mtime := t
		if m, ok := meta[uint32(num)]; ok {
			mode := binary.LittleEndian.Uint16(in[0:])
			binary.LittleEndian.PutUint16(in[0:], mode&0xF000|m.perm&0o7777)
			binary.LittleEndian.PutUint16(in[0x02:], uint16(m.uid))
			binary.LittleEndian.PutUint16(in[0x78:], uint16(m.uid>>16))
			binary.LittleEndian.PutUint16(in[0x18:], uint16(m.gid))
			binary.LittleEndian.PutUint16(in[0x7A:], uint16(m.gid>>16))
			mtime = m.mtime
		}
		// seconds at base, epoch bits and nanoseconds in *_extra
		putTime := func(base, extraOff int, tm time.Time) {
			sec := tm.Unix()
			binary.LittleEndian.PutUint32(in[base:], uint32(sec))
			if int64(extraOff+4-0x80) <= extra {
				binary.LittleEndian.PutUint32(in[extraOff:], uint32((sec>>32)&3)|uint32(tm.Nanosecond())<<2)
			}
		}
		putTime(0x08, 0x8C, mtime) // atime
		putTime(0x10, 0x88, mtime) // mtime
		putTime(0x0C, 0x84, t)     // ctime
		if extra >= 24 {
			putTime(0x90, 0x94, t) // crtime
		}
		// go-diskfs fills the checksum fields even without
		// metadata_csum; clear them then, recompute them otherwise.
		in[0x7C], in[0x7D] = 0, 0
		if extra >= 4 {
			in[0x82], in[0x83] = 0, 0
		}
		if g.csum {
			putInodeChecksum(in, g.inodeChecksum(g.csumSeed, num, in))
		}
		return true
	})
	if err != nil {
		return fmt.Errorf("stabilize: %w", err)
	}
	return nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// ext4UUID is the filesystem UUID WriteExt4 gives a filesystem with o.
func ext4UUID(o FSOptions) uuid.UUID {
	o.defaults()
	return SeedUUID(o.Seed, "ext4:"+o.Label)
}
