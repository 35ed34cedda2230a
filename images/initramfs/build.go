package initramfs

import (
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

// Compression is how the archive is compressed. The Debian cloud kernel
// unpacks all three.
type Compression string

const (
	None Compression = "none"
	Gzip Compression = "gzip"
	Zstd Compression = "zstd"
)

// ParseCompression accepts "none", "gzip"/"gz", "zstd"/"zst" ("" = gzip).
func ParseCompression(s string) (Compression, error) {
	switch strings.ToLower(s) {
	case "", "gzip", "gz":
		return Gzip, nil
	case "zstd", "zst":
		return Zstd, nil
	case "none", "cpio":
		return None, nil
	}
	return "", fmt.Errorf("unknown initramfs compression %q (none, gzip, zstd)", s)
}

// File is one entry of the archive.
type File struct {
	Path     string      // inside the archive: "init", "bin/busybox", "/dev/console"
	Mode     fs.FileMode // type bits and permissions; 0o755 for an executable, fs.ModeDir|0o755, ...
	UID, GID int
	Source   string // host file with the content of a regular file
	Data     []byte // content of a regular file when Source is empty
	Target   string // symlink target
	Major    uint32 // device nodes (Mode has fs.ModeDevice, plus fs.ModeCharDevice for char devices)
	Minor    uint32
}

// Dir returns a directory entry.
func Dir(p string, perm fs.FileMode) File { return File{Path: p, Mode: fs.ModeDir | perm.Perm()} }

// Symlink returns a symlink entry.
func Symlink(p, target string) File {
	return File{Path: p, Mode: fs.ModeSymlink | 0o777, Target: target}
}

// CharDevice returns a character device node, e.g. CharDevice("dev/console", 5, 1, 0o600).
func CharDevice(p string, major, minor uint32, perm fs.FileMode) File {
	return File{Path: p, Mode: fs.ModeDevice | fs.ModeCharDevice | perm.Perm(), Major: major, Minor: minor}
}

// Tree copies a host directory into the archive.
type Tree struct {
	Source string // host directory
	Dest   string // directory inside the archive ("" = root)
	// KeepOwner keeps the host files' uid/gid; by default everything is
	// owned by root, so a build by an unprivileged user works.
	KeepOwner bool
}

// Spec describes an initramfs.
type Spec struct {
	Files []File
	Trees []Tree
	// Modules are kernel module names ("virtio_net", "virtio-blk") resolved
	// with their dependencies against ModulesDir (/lib/modules/VERSION, with
	// modules.dep). They land in lib/modules/VERSION/... inside the archive
	// with a modules.dep for them and a plain list, modules.load-order, of
	// archive paths in insmod order.
	Modules    []string
	ModulesDir string
	// Compression: None, Gzip or Zstd ("" means Gzip).
	Compression Compression
	// ModTime is the time of every entry; zero means the Unix epoch.
	ModTime time.Time
}

// Result says what Build wrote.
type Result struct {
	Entries int
	// LoadOrder lists the archive paths of the modules in the order to
	// insmod them (dependencies first), without a leading slash.
	LoadOrder []string
}

// LoadOrderFile is the name, inside lib/modules/VERSION, of the module
// list in load order.
const LoadOrderFile = "modules.load-order"

// Build writes the initramfs described by s to w. Entries appear in Spec
// order (Files, then Trees, then modules); missing parent directories are
// added (0755, root) and dev/console (char 5:1) is added when the Spec has
// none, because the kernel opens it for /init before anything mounts
// devtmpfs. A path given twice is an error unless both are directories.
func Build(w io.Writer, s Spec) (*Result, error) {
	comp := s.Compression
	if comp == "" {
		comp = Gzip
	}
	var out io.Writer
	var closeComp func() error
	switch comp {
	case None:
		out, closeComp = w, func() error { return nil }
	case Gzip:
		gz, err := gzip.NewWriterLevel(w, gzip.BestSpeed)
		if err != nil {
			return nil, err
		}
		out, closeComp = gz, gz.Close
	case Zstd:
		zw, err := zstd.NewWriter(w, zstd.WithEncoderConcurrency(1), zstd.WithEncoderLevel(zstd.SpeedDefault))
		if err != nil {
			return nil, err
		}
		out, closeComp = zw, zw.Close
	default:
		return nil, fmt.Errorf("initramfs: unknown compression %q", comp)
	}
	b := &builder{cw: NewWriter(out), seen: map[string]bool{}, mtime: s.ModTime}
	if b.mtime.IsZero() {
		b.mtime = time.Unix(0, 0)
	}
	res := &Result{}
	err := b.build(s, res)
	if err == nil {
		err = b.cw.Close()
	}
	if cerr := closeComp(); err == nil && cerr != nil {
		err = fmt.Errorf("initramfs: %s: %w", comp, cerr)
	}
	if err != nil {
		return nil, err
	}
	res.Entries = int(b.cw.ino)
	return res, nil
}

type builder struct {
	cw    *Writer
	seen  map[string]bool // archive path -> is a directory
	mtime time.Time
}

func (b *builder) build(s Spec, res *Result) error {
	for _, f := range s.Files {
		if err := b.add(f); err != nil {
			return err
		}
	}
	for _, t := range s.Trees {
		if err := b.addTree(t); err != nil {
			return err
		}
	}
	if len(s.Modules) > 0 {
		if s.ModulesDir == "" {
			return errors.New("initramfs: modules requested but no ModulesDir")
		}
		idx, err := LoadModuleIndex(s.ModulesDir)
		if err != nil {
			return fmt.Errorf("initramfs: %w", err)
		}
		mods, err := idx.Resolve(s.Modules)
		if err != nil {
			return fmt.Errorf("initramfs: %w", err)
		}
		base := path.Join("lib/modules", idx.Version)
		var list strings.Builder
		for _, m := range mods {
			p := path.Join(base, m.Path)
			if err := b.add(File{Path: p, Mode: 0o644, Source: filepath.Join(s.ModulesDir, filepath.FromSlash(m.Path))}); err != nil {
				return err
			}
			res.LoadOrder = append(res.LoadOrder, p)
			list.WriteString("/" + p + "\n")
		}
		if err := b.add(File{Path: path.Join(base, "modules.dep"), Mode: 0o644, Data: depFile(mods)}); err != nil {
			return err
		}
		if err := b.add(File{Path: path.Join(base, LoadOrderFile), Mode: 0o644, Data: []byte(list.String())}); err != nil {
			return err
		}
		if builtin, err := os.ReadFile(filepath.Join(s.ModulesDir, "modules.builtin")); err == nil {
			if err := b.add(File{Path: path.Join(base, "modules.builtin"), Mode: 0o644, Data: builtin}); err != nil {
				return err
			}
		}
	}
	if _, ok := b.seen["dev/console"]; !ok {
		return b.add(CharDevice("dev/console", 5, 1, 0o600))
	}
	return nil
}

// parents writes the missing parent directories of name.
func (b *builder) parents(name string) error {
	dir := path.Dir(name)
	if dir == "." {
		return nil
	}
	if isDir, ok := b.seen[dir]; ok {
		if !isDir {
			return fmt.Errorf("initramfs: %s: parent %s is not a directory", name, dir)
		}
		return nil
	}
	if err := b.parents(dir); err != nil {
		return err
	}
	b.seen[dir] = true
	return b.cw.WriteHeader(&Header{Name: dir, Mode: fs.ModeDir | 0o755, ModTime: b.mtime})
}

func (b *builder) add(f File) error {
	name, err := cleanName(f.Path)
	if err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	if name == "." {
		return nil // the kernel's rootfs exists already
	}
	isDir := f.Mode.IsDir()
	if prev, ok := b.seen[name]; ok {
		if prev && isDir {
			return nil
		}
		return fmt.Errorf("initramfs: %s listed twice", name)
	}
	if err := b.parents(name); err != nil {
		return err
	}
	b.seen[name] = isDir
	h := &Header{Name: name, Mode: f.Mode, UID: f.UID, GID: f.GID, ModTime: b.mtime, Major: f.Major, Minor: f.Minor}
	switch f.Mode.Type() {
	case fs.ModeSymlink:
		if f.Target == "" {
			return fmt.Errorf("initramfs: symlink %s has no target", name)
		}
		h.Size = int64(len(f.Target))
		if err := b.cw.WriteHeader(h); err != nil {
			return err
		}
		_, err := io.WriteString(b.cw, f.Target)
		return err
	case 0:
		if f.Source == "" {
			h.Size = int64(len(f.Data))
			if err := b.cw.WriteHeader(h); err != nil {
				return err
			}
			_, err := b.cw.Write(f.Data)
			return err
		}
		return b.copyFile(h, f.Source)
	default:
		return b.cw.WriteHeader(h)
	}
}

func (b *builder) copyFile(h *Header, src string) error {
	r, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("initramfs: %s: %w", h.Name, err)
	}
	defer r.Close()
	st, err := r.Stat()
	if err != nil {
		return fmt.Errorf("initramfs: %s: %w", h.Name, err)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("initramfs: %s: source %s is not a regular file", h.Name, src)
	}
	h.Size = st.Size()
	if err := b.cw.WriteHeader(h); err != nil {
		return err
	}
	n, err := io.Copy(b.cw, io.LimitReader(r, h.Size))
	if err != nil {
		return fmt.Errorf("initramfs: %s: copy %s: %w", h.Name, src, err)
	}
	if n != h.Size {
		return fmt.Errorf("initramfs: %s: %s shrank while reading (%d of %d bytes)", h.Name, src, n, h.Size)
	}
	return nil
}

func (b *builder) addTree(t Tree) error {
	root := filepath.Clean(t.Source)
	st, err := os.Stat(root)
	if err != nil {
		return fmt.Errorf("initramfs: tree: %w", err)
	}
	if !st.IsDir() {
		return fmt.Errorf("initramfs: tree %s is not a directory", root)
	}
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("initramfs: tree %s: %w", root, err)
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return fmt.Errorf("initramfs: %s: %w", p, err)
		}
		f := File{Path: path.Join("/", t.Dest, filepath.ToSlash(rel)), Mode: info.Mode()}
		if t.KeepOwner {
			if sys, ok := info.Sys().(*syscall.Stat_t); ok {
				f.UID, f.GID = int(sys.Uid), int(sys.Gid)
			}
		}
		switch info.Mode().Type() {
		case 0:
			f.Source = p
		case fs.ModeSymlink:
			if f.Target, err = os.Readlink(p); err != nil {
				return fmt.Errorf("initramfs: %w", err)
			}
		case fs.ModeDevice, fs.ModeDevice | fs.ModeCharDevice:
			if sys, ok := info.Sys().(*syscall.Stat_t); ok {
				f.Major, f.Minor = devMajor(sys.Rdev), devMinor(sys.Rdev)
			}
		}
		return b.add(f)
	})
}

func devMajor(dev uint64) uint32 { return uint32((dev>>8)&0xfff) | uint32((dev>>32)&^0xfff) }
func devMinor(dev uint64) uint32 { return uint32(dev&0xff) | uint32((dev>>12)&^0xff) }
