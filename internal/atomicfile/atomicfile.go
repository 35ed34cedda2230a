// Package atomicfile replaces files so that a reader sees the old content
// or the new, never half of it, and a failed write leaves nothing behind:
// the content goes to a temporary file in the same directory, is synced,
// and is renamed over the target.
package atomicfile

import (
	"fmt"
	"os"
	"path/filepath"
)

// Write replaces path with data, with permissions mode.
func Write(path string, data []byte, mode os.FileMode) error {
	return WriteWith(path, mode, func(f *os.File) error {
		_, err := f.Write(data)
		return err
	})
}

// WriteWith replaces path with what write writes to the file it is
// given (which it must not close), with permissions mode. When write
// fails, path is left as it was.
func WriteWith(path string, mode os.FileMode, write func(f *os.File) error) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err := write(f); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Chmod(mode); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
