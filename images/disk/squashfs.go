package disk

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/squashfs"
)

// WriteSquashfs writes a gzip-compressed squashfs of src to f (from offset
// 0). go-diskfs builds squashfs from a host workspace directory, so the
// source is staged there first (symlinks, modes, owners and times kept;
// hard links copied; device nodes skipped as for ext4). maxSize, if not
// zero, is an upper bound for the result.
func WriteSquashfs(ctx context.Context, f *os.File, src Source, maxSize int64, o FSOptions) (*Result, error) {
	o.defaults()
	sq, err := squashfs.Create(file.New(f, false), 0, 0, 0)
	if err != nil {
		return nil, fmt.Errorf("squashfs: create: %w", err)
	}
	defer sq.Close()
	ws := sq.Workspace()
	res := &Result{}
	var dirs []*Entry
	written := map[string]bool{}
	err = src.Walk(ctx, func(e *Entry, r io.Reader) error {
		p, err := CleanPath(e.Path)
		if err != nil {
			return err
		}
		host := filepath.Join(ws, filepath.FromSlash(p))
		for dir := path.Dir(p); dir != "."; dir = path.Dir(dir) {
			if st, err := os.Lstat(filepath.Join(ws, dir)); err == nil && !st.IsDir() {
				return fmt.Errorf("squashfs: %s: parent %s is not a directory", p, dir)
			}
		}
		switch {
		case e.HardLink != "":
			if !written[e.HardLink] {
				return fmt.Errorf("squashfs: hard link %s: target %s is not an earlier regular file", p, e.HardLink)
			}
			in, err := os.Open(filepath.Join(ws, filepath.FromSlash(e.HardLink)))
			if err != nil {
				return fmt.Errorf("squashfs: %w", err)
			}
			err = copyToFile(host, in, 0o644)
			in.Close()
			if err != nil {
				return err
			}
			res.HardLinksCopied++
		case e.Mode.IsRegular():
			if err := copyToFile(host, r, e.Mode.Perm()); err != nil {
				return err
			}
			written[p] = true
		case e.Mode.IsDir():
			if err := os.MkdirAll(host, 0o755); err != nil {
				return fmt.Errorf("squashfs: %w", err)
			}
			dirs = append(dirs, e)
			return nil
		case e.Mode.Type() == fs.ModeSymlink:
			if err := os.Symlink(e.Linkname, host); err != nil {
				return fmt.Errorf("squashfs: %w", err)
			}
		default:
			res.Skipped = append(res.Skipped, p)
			return nil
		}
		return applyMeta(host, e, o)
	})
	if err != nil {
		return nil, err
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		p, _ := CleanPath(dirs[i].Path)
		if err := applyMeta(filepath.Join(ws, filepath.FromSlash(p)), dirs[i], o); err != nil {
			return nil, err
		}
	}
	var uid, gid *uint32
	if !o.KeepOwners {
		zero := uint32(0)
		uid, gid = &zero, &zero
	}
	if err := sq.Finalize(squashfs.FinalizeOptions{Compression: &squashfs.CompressorGzip{}, FileUID: uid, FileGID: gid}); err != nil {
		return nil, fmt.Errorf("squashfs: finalize: %w", err)
	}
	// The superblock's mkfs time (offset 8) is time.Now in go-diskfs.
	if _, err := f.WriteAt(binary.LittleEndian.AppendUint32(nil, uint32(o.Time.Unix())), 8); err != nil {
		return nil, fmt.Errorf("squashfs: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	res.Size = st.Size()
	if maxSize > 0 && res.Size > maxSize {
		return nil, fmt.Errorf("squashfs: %w: %d MiB compressed, limit %d MiB", ErrTooSmall, res.Size>>20, maxSize>>20)
	}
	return res, nil
}

func copyToFile(p string, r io.Reader, perm os.FileMode) error {
	out, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, perm)
	if err != nil {
		return fmt.Errorf("squashfs: %w", err)
	}
	if r != nil {
		if _, err := io.Copy(out, r); err != nil {
			out.Close()
			return fmt.Errorf("squashfs: %s: %w", p, err)
		}
	}
	return out.Close()
}

func applyMeta(host string, e *Entry, o FSOptions) error {
	if o.KeepOwners && os.Geteuid() == 0 {
		if err := os.Lchown(host, e.UID, e.GID); err != nil {
			return fmt.Errorf("squashfs: %w", err)
		}
	}
	if e.Mode.Type() != fs.ModeSymlink {
		if err := os.Chmod(host, e.Mode.Perm()|e.Mode&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky)); err != nil {
			return fmt.Errorf("squashfs: %w", err)
		}
		if err := os.Chtimes(host, e.ModTime, e.ModTime); err != nil {
			return fmt.Errorf("squashfs: %w", err)
		}
	}
	return nil
}
