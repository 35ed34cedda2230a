package disk

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// WriteSquashfs writes a gzip-compressed squashfs of src to f. The source
// is staged in a host directory (symlinks, modes, owners and times kept;
// hard links copied; device nodes skipped as for ext4) and packed with
// mksquashfs from squashfs-tools: go-diskfs v1.9.4 resolves symlink
// targets relative to the process's working directory, so it cannot pack
// a root filesystem. maxSize, if not zero, bounds the result.
func WriteSquashfs(ctx context.Context, f *os.File, src Source, maxSize int64, o FSOptions) (*Result, error) {
	o.defaults()
	if _, err := exec.LookPath("mksquashfs"); err != nil {
		return nil, fmt.Errorf("squashfs: mksquashfs not found (apt-get install squashfs-tools): %w", err)
	}
	ws, err := os.MkdirTemp(filepath.Dir(f.Name()), ".squashfs-stage-*")
	if err != nil {
		return nil, fmt.Errorf("squashfs: %w", err)
	}
	defer os.RemoveAll(ws)
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
			st, _ := in.Stat()
			err = copyToFile(host, in, 0o644)
			in.Close()
			if err != nil {
				return err
			}
			if st != nil {
				e.Mode = st.Mode()
			}
			res.HardLinksCopied++
		case e.Mode.IsRegular():
			if err := copyToFile(host, r, e.Mode.Perm()); err != nil {
				return err
			}
			written[p] = true
		case e.Mode.IsDir():
			if p != "." {
				if err := os.MkdirAll(host, 0o755); err != nil {
					return fmt.Errorf("squashfs: %w", err)
				}
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
	// Directory times last: creating entries changes them.
	for i := len(dirs) - 1; i >= 0; i-- {
		p, _ := CleanPath(dirs[i].Path)
		if err := applyMeta(filepath.Join(ws, filepath.FromSlash(p)), dirs[i], o); err != nil {
			return nil, err
		}
	}
	args := []string{ws, f.Name(), "-noappend", "-quiet", "-no-progress", "-comp", "gzip", "-no-xattrs",
		"-mkfs-time", strconv.FormatInt(o.Time.Unix(), 10), "-reproducible"}
	if !o.KeepOwners {
		args = append(args, "-all-root")
	}
	cmd := exec.CommandContext(ctx, "mksquashfs", args...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("squashfs: mksquashfs: %v: %s", err, out)
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
	}
	ts := []unix.Timespec{unix.NsecToTimespec(e.ModTime.UnixNano()), unix.NsecToTimespec(e.ModTime.UnixNano())}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, host, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("squashfs: set times of %s: %w", host, err)
	}
	return nil
}
