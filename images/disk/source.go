package disk

import (
	"archive/tar"
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// Entry is one file of a source tree.
type Entry struct {
	Path     string // relative, slash-separated, cleaned; "." is the root
	Mode     fs.FileMode
	UID, GID int
	ModTime  time.Time
	Size     int64  // regular files
	Linkname string // symlink target, stored verbatim
	HardLink string // tar hard link: path of the earlier entry with the content
	Major    uint32 // device nodes (skipped by ext4)
	Minor    uint32
}

// Source is a tree of files: a directory or a tar stream. Walk may be
// called more than once (a sizing pass, then the writing pass).
type Source interface {
	// Walk calls fn for every entry, parents before children. For regular
	// files r yields exactly e.Size bytes; it is nil otherwise.
	Walk(ctx context.Context, fn func(e *Entry, r io.Reader) error) error
	String() string
}

// OpenSource returns a DirSource for a directory and a TarSource for a
// (optionally gzip- or zstd-compressed) tar file.
func OpenSource(p string) (Source, error) {
	st, err := os.Stat(p)
	if err != nil {
		return nil, fmt.Errorf("source: %w", err)
	}
	if st.IsDir() {
		return DirSource(p), nil
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("source %s: not a directory or a tar file", p)
	}
	return TarFile(p), nil
}

// CleanPath validates a path from a source and returns it relative and
// cleaned. It rejects paths that climb out of the tree.
func CleanPath(p string) (string, error) {
	if strings.ContainsRune(p, 0) {
		return "", fmt.Errorf("path %q contains NUL", p)
	}
	rel := strings.TrimLeft(p, "/")
	for _, el := range strings.Split(rel, "/") {
		if el == ".." {
			return "", fmt.Errorf("path %q escapes the tree (..)", p)
		}
	}
	c := path.Clean("/" + rel)
	if c == "/" {
		return ".", nil
	}
	return c[1:], nil
}

// DirSource is a host directory. Symlinks inside it are recorded, never
// followed; the directory itself may be a symlink.
type DirSource string

func (d DirSource) String() string { return string(d) }

// Walk implements Source.
func (d DirSource) Walk(ctx context.Context, fn func(e *Entry, r io.Reader) error) error {
	root := string(d)
	if st, err := os.Stat(root); err != nil {
		return fmt.Errorf("source: %w", err)
	} else if !st.IsDir() {
		return fmt.Errorf("source %s: not a directory", root)
	}
	root, err := filepath.EvalSymlinks(root)
	if err != nil {
		return fmt.Errorf("source: %w", err)
	}
	return filepath.WalkDir(root, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("source %s: %w", d, err)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		info, err := de.Info()
		if err != nil {
			return fmt.Errorf("source %s: %w", p, err)
		}
		e := &Entry{Path: filepath.ToSlash(rel), Mode: info.Mode(), ModTime: info.ModTime()}
		if sys, ok := info.Sys().(*syscall.Stat_t); ok {
			e.UID, e.GID = int(sys.Uid), int(sys.Gid)
			if info.Mode()&fs.ModeDevice != 0 {
				e.Major, e.Minor = uint32((sys.Rdev>>8)&0xfff), uint32(sys.Rdev&0xff|(sys.Rdev>>12)&^0xff)
			}
		}
		switch info.Mode().Type() {
		case 0:
			e.Size = info.Size()
			f, err := os.Open(p)
			if err != nil {
				return fmt.Errorf("source: %w", err)
			}
			defer f.Close()
			// Guard against files that change size under us: the image
			// must get exactly the size that was measured.
			err = fn(e, &exactReader{r: f, n: e.Size, name: p})
			return err
		case fs.ModeSymlink:
			if e.Linkname, err = os.Readlink(p); err != nil {
				return fmt.Errorf("source: %w", err)
			}
		}
		return fn(e, nil)
	})
}

// exactReader yields exactly n bytes or fails.
type exactReader struct {
	r    io.Reader
	n    int64
	name string
}

func (x *exactReader) Read(p []byte) (int, error) {
	if x.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > x.n {
		p = p[:x.n]
	}
	n, err := x.r.Read(p)
	x.n -= int64(n)
	if err == io.EOF && x.n > 0 {
		return n, fmt.Errorf("%s: file shrank while reading (%d bytes missing)", x.name, x.n)
	}
	if x.n == 0 && err == nil {
		err = io.EOF
	}
	return n, err
}

// TarSource reads a tar stream; Open is called once per Walk.
type TarSource struct {
	Name string
	Open func() (io.ReadCloser, error)
}

// TarFile is a TarSource over a file, with gzip and zstd detected by
// their magic bytes.
func TarFile(p string) *TarSource {
	return &TarSource{Name: p, Open: func() (io.ReadCloser, error) { return os.Open(p) }}
}

func (t *TarSource) String() string { return t.Name }

// Walk implements Source. Leading slashes are stripped from entry names
// (as GNU tar does); entries with .. or below a symlink are errors.
func (t *TarSource) Walk(ctx context.Context, fn func(e *Entry, r io.Reader) error) error {
	rc, err := t.Open()
	if err != nil {
		return fmt.Errorf("source %s: %w", t.Name, err)
	}
	defer rc.Close()
	r, closeDec, err := decompress(rc)
	if err != nil {
		return fmt.Errorf("source %s: %w", t.Name, err)
	}
	defer closeDec()
	tr := tar.NewReader(r)
	symlinks := map[string]bool{}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("source %s: read tar: %w", t.Name, err)
		}
		p, err := CleanPath(h.Name)
		if err != nil {
			return fmt.Errorf("source %s: %w", t.Name, err)
		}
		for dir := path.Dir(p); dir != "."; dir = path.Dir(dir) {
			if symlinks[dir] {
				return fmt.Errorf("source %s: %s: path goes through symlink %s", t.Name, h.Name, dir)
			}
		}
		fi := h.FileInfo()
		e := &Entry{Path: p, Mode: fi.Mode(), UID: h.Uid, GID: h.Gid, ModTime: h.ModTime,
			Major: uint32(h.Devmajor), Minor: uint32(h.Devminor)}
		var content io.Reader
		switch h.Typeflag {
		case tar.TypeReg, tar.TypeRegA:
			e.Size = h.Size
			content = &exactReader{r: tr, n: h.Size, name: h.Name}
		case tar.TypeDir:
		case tar.TypeSymlink:
			e.Linkname = h.Linkname
			symlinks[p] = true
		case tar.TypeLink:
			target, err := CleanPath(h.Linkname)
			if err != nil {
				return fmt.Errorf("source %s: hard link %s: %w", t.Name, h.Name, err)
			}
			e.HardLink = target
			e.Mode = e.Mode &^ fs.ModeType
		case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		case tar.TypeXGlobalHeader:
			continue
		default:
			return fmt.Errorf("source %s: %s: unsupported tar entry type %q", t.Name, h.Name, h.Typeflag)
		}
		if err := fn(e, content); err != nil {
			return err
		}
	}
}

func decompress(r io.Reader) (io.Reader, func(), error) {
	br := bufio.NewReaderSize(r, 1<<16)
	magic, _ := br.Peek(4)
	switch {
	case len(magic) >= 2 && magic[0] == 0x1f && magic[1] == 0x8b:
		gz, err := gzip.NewReader(br)
		if err != nil {
			return nil, nil, err
		}
		return gz, func() { gz.Close() }, nil
	case len(magic) == 4 && magic[0] == 0x28 && magic[1] == 0xb5 && magic[2] == 0x2f && magic[3] == 0xfd:
		zr, err := zstd.NewReader(br)
		if err != nil {
			return nil, nil, err
		}
		return zr, zr.Close, nil
	}
	return br, func() {}, nil
}

// Usage is what a source needs.
type Usage struct {
	Files, Dirs, Symlinks, Others int
	Bytes                         int64 // content of regular files (hard links counted again: they are copied)
	Blocks4K                      int64 // content in 4 KiB blocks
}

// Measure walks a source once and sums what it needs.
func Measure(ctx context.Context, src Source) (Usage, error) {
	var u Usage
	sizes := map[string]int64{}
	err := src.Walk(ctx, func(e *Entry, r io.Reader) error {
		switch {
		case e.HardLink != "":
			u.Files++
			u.Bytes += sizes[e.HardLink]
			u.Blocks4K += (sizes[e.HardLink] + 4095) / 4096
		case e.Mode.IsRegular():
			u.Files++
			u.Bytes += e.Size
			u.Blocks4K += (e.Size + 4095) / 4096
			sizes[e.Path] = e.Size
		case e.Mode.IsDir():
			u.Dirs++
		case e.Mode.Type() == fs.ModeSymlink:
			u.Symlinks++
		default:
			u.Others++
		}
		return nil
	})
	return u, err
}
