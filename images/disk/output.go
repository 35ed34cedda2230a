package disk

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
)

// FSType is a filesystem image type.
type FSType string

const (
	FSExt4     FSType = "ext4"
	FSSquashfs FSType = "squashfs"
)

// BuildFilesystem writes a bare filesystem image (no partition table) of
// src to out. size 0 computes the size from the content. out appears only
// when the image is complete.
func BuildFilesystem(ctx context.Context, out string, t FSType, src Source, size int64, o FSOptions) (*Result, error) {
	var res *Result
	err := writeAtomic(out, func(f *os.File) error {
		var err error
		switch t {
		case FSExt4, "":
			res, err = WriteExt4(ctx, f, 0, size, src, o)
		case FSSquashfs:
			res, err = WriteSquashfs(ctx, f, src, size, o)
		default:
			err = fmt.Errorf("unknown filesystem type %q (ext4, squashfs)", t)
		}
		return err
	})
	return res, err
}

// writeAtomic runs write on a temporary file next to out and renames it
// into place only on success; on failure nothing is left.
func writeAtomic(out string, write func(f *os.File) error) (err error) {
	f, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".tmp-*")
	if err != nil {
		return fmt.Errorf("create %s: %w", out, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err := write(f); err != nil {
		return fmt.Errorf("build %s: %w", out, err)
	}
	if err := f.Chmod(0o644); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("build %s: %w", out, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("build %s: %w", out, err)
	}
	if err := os.Rename(f.Name(), out); err != nil {
		return fmt.Errorf("build %s: %w", out, err)
	}
	return nil
}
