package initramfs

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strings"
	"time"
)

// newc mode bits (see cpio(5)).
const (
	modeSocket  = 0o140000
	modeSymlink = 0o120000
	modeRegular = 0o100000
	modeBlock   = 0o060000
	modeDir     = 0o040000
	modeChar    = 0o020000
	modeFIFO    = 0o010000
)

const trailerName = "TRAILER!!!"

// Header describes one archive entry.
type Header struct {
	Name         string      // path inside the archive, without a leading slash
	Mode         fs.FileMode // type bits (fs.ModeDir, fs.ModeSymlink, fs.ModeDevice, ...) and permissions
	UID, GID     int
	ModTime      time.Time
	Size         int64  // bytes of content that follow (regular files and symlink targets)
	Major, Minor uint32 // device number of a device node
}

// Writer writes a newc cpio archive. Call WriteHeader, then write exactly
// Size bytes of content, for each entry; Close writes the trailer. It does
// not close the underlying writer.
type Writer struct {
	w         io.Writer
	ino       uint32
	remaining int64 // content bytes still expected for the current entry
	pad       int   // padding after the current entry's content
	closed    bool
	err       error
}

// NewWriter returns a Writer on w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: w} }

// cpioMode converts a Go file mode to newc mode bits.
func cpioMode(m fs.FileMode) (uint32, error) {
	// Unix-style 0o4755 literals are accepted as well as fs.ModeSetuid.
	bits := uint32(m.Perm()) | uint32(m&0o7000)
	if m&fs.ModeSetuid != 0 {
		bits |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		bits |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		bits |= 0o1000
	}
	switch t := m.Type(); {
	case t == 0:
		bits |= modeRegular
	case t == fs.ModeDir:
		bits |= modeDir
	case t == fs.ModeSymlink:
		bits |= modeSymlink
	case t == fs.ModeDevice|fs.ModeCharDevice:
		bits |= modeChar
	case t == fs.ModeDevice:
		bits |= modeBlock
	case t == fs.ModeNamedPipe:
		bits |= modeFIFO
	case t == fs.ModeSocket:
		bits |= modeSocket
	default:
		return 0, fmt.Errorf("unsupported file type %v", t)
	}
	return bits, nil
}

// cleanName normalizes an archive path: no leading slash, no "." or ".."
// elements. The root directory is ".".
func cleanName(name string) (string, error) {
	if name == "" {
		return "", errors.New("empty path")
	}
	for _, el := range strings.Split(strings.Trim(name, "/"), "/") {
		if el == ".." {
			return "", fmt.Errorf("path %q: .. is not allowed", name)
		}
	}
	c := path.Clean("/" + name)
	if c == "/" {
		return ".", nil
	}
	return c[1:], nil
}

// WriteHeader starts a new entry. The previous entry's content must be
// complete.
func (w *Writer) WriteHeader(h *Header) error {
	if w.err != nil {
		return w.err
	}
	if w.closed {
		return errors.New("cpio: write after close")
	}
	if w.remaining != 0 {
		return fmt.Errorf("cpio: previous entry is %d bytes short", w.remaining)
	}
	if err := w.finishEntry(); err != nil {
		return err
	}
	name, err := cleanName(h.Name)
	if err != nil {
		return fmt.Errorf("cpio: %w", err)
	}
	mode, err := cpioMode(h.Mode)
	if err != nil {
		return fmt.Errorf("cpio: %s: %w", name, err)
	}
	t := h.Mode.Type()
	if h.Size < 0 || h.Size > 0xffffffff {
		return fmt.Errorf("cpio: %s: size %d out of range for newc", name, h.Size)
	}
	if h.Size != 0 && t != 0 && t != fs.ModeSymlink {
		return fmt.Errorf("cpio: %s: only regular files and symlinks carry content", name)
	}
	nlink := uint32(1)
	if t == fs.ModeDir {
		nlink = 2
	}
	w.ino++
	var mtime int64
	if !h.ModTime.IsZero() {
		mtime = h.ModTime.Unix()
	}
	if mtime < 0 || mtime > 0xffffffff {
		mtime = 0
	}
	if err := w.writeRaw(w.ino, mode, uint32(h.UID), uint32(h.GID), nlink, uint32(mtime), uint32(h.Size), h.Major, h.Minor, name); err != nil {
		return err
	}
	w.remaining = h.Size
	w.pad = int(pad4(h.Size))
	return nil
}

func pad4(n int64) int64 { return (4 - n%4) % 4 }

func (w *Writer) writeRaw(ino, mode, uid, gid, nlink, mtime, size, rmaj, rmin uint32, name string) error {
	hdr := fmt.Sprintf("070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		ino, mode, uid, gid, nlink, mtime, size, 0, 0, rmaj, rmin, len(name)+1, 0)
	buf := make([]byte, 0, len(hdr)+len(name)+4)
	buf = append(buf, hdr...)
	buf = append(buf, name...)
	buf = append(buf, 0)
	for len(buf)%4 != 0 {
		buf = append(buf, 0)
	}
	if _, err := w.w.Write(buf); err != nil {
		w.err = fmt.Errorf("cpio: %w", err)
		return w.err
	}
	return nil
}

// Write writes content of the current entry.
func (w *Writer) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	if int64(len(p)) > w.remaining {
		return 0, fmt.Errorf("cpio: write of %d bytes exceeds entry size (%d left)", len(p), w.remaining)
	}
	n, err := w.w.Write(p)
	w.remaining -= int64(n)
	if err != nil {
		w.err = fmt.Errorf("cpio: %w", err)
	}
	return n, w.err
}

func (w *Writer) finishEntry() error {
	if w.pad > 0 {
		if _, err := w.w.Write(make([]byte, w.pad)); err != nil {
			w.err = fmt.Errorf("cpio: %w", err)
			return w.err
		}
		w.pad = 0
	}
	return nil
}

// Close writes the trailer entry.
func (w *Writer) Close() error {
	if w.err != nil {
		return w.err
	}
	if w.closed {
		return nil
	}
	if w.remaining != 0 {
		return fmt.Errorf("cpio: last entry is %d bytes short", w.remaining)
	}
	if err := w.finishEntry(); err != nil {
		return err
	}
	w.closed = true
	return w.writeRaw(0, 0, 0, 0, 1, 0, 0, 0, 0, trailerName)
}
