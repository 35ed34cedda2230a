package iso

import (
	"io/fs"
	"os"

	"github.com/diskfs/go-diskfs/backend"
)

// coalescer is a go-diskfs backend over a file that merges contiguous
// WriteAt calls into 4 MiB writes. go-diskfs v1.9.4 copies file data into
// an ISO 2 KiB at a time, which otherwise costs a system call per 2 KiB.
// Any read, seek or Sys flushes first, so go-diskfs always sees its own
// writes.
type coalescer struct {
	f   *os.File
	buf []byte
	off int64 // file offset of buf[0]
}

var _ backend.Storage = (*coalescer)(nil)

func newCoalescer(f *os.File) *coalescer { return &coalescer{f: f, buf: make([]byte, 0, 4<<20)} }

// Flush writes what is pending.
func (c *coalescer) Flush() error {
	if len(c.buf) == 0 {
		return nil
	}
	_, err := c.f.WriteAt(c.buf, c.off)
	c.buf = c.buf[:0]
	return err
}

func (c *coalescer) WriteAt(p []byte, off int64) (int, error) {
	if len(c.buf) > 0 && off == c.off+int64(len(c.buf)) && len(c.buf)+len(p) <= cap(c.buf) {
		c.buf = append(c.buf, p...)
		return len(p), nil
	}
	if err := c.Flush(); err != nil {
		return 0, err
	}
	if len(p) >= cap(c.buf) {
		return c.f.WriteAt(p, off)
	}
	c.off = off
	c.buf = append(c.buf, p...)
	return len(p), nil
}

func (c *coalescer) ReadAt(p []byte, off int64) (int, error) {
	if err := c.Flush(); err != nil {
		return 0, err
	}
	return c.f.ReadAt(p, off)
}

func (c *coalescer) Read(p []byte) (int, error) {
	if err := c.Flush(); err != nil {
		return 0, err
	}
	return c.f.Read(p)
}

func (c *coalescer) Seek(offset int64, whence int) (int64, error) {
	if err := c.Flush(); err != nil {
		return 0, err
	}
	return c.f.Seek(offset, whence)
}

func (c *coalescer) Stat() (fs.FileInfo, error) {
	if err := c.Flush(); err != nil {
		return nil, err
	}
	return c.f.Stat()
}

// Close flushes; the file itself stays open for its owner.
func (c *coalescer) Close() error { return c.Flush() }

func (c *coalescer) Sys() (*os.File, error) {
	if err := c.Flush(); err != nil {
		return nil, err
	}
	return c.f, nil
}

func (c *coalescer) Writable() (backend.WritableFile, error) { return c, nil }

func (c *coalescer) Path() string { return c.f.Name() }
