package datadir

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// The data dir holds every account's secret keys (encrypted, with the key
// file beside the store), the node CA's private key, the pagination key
// and tenants' user data: nobody but its owner (root) may read it. Dirs
// are 0700 and files 0600 (an executable keeps its owner's x bit).
const (
	DirMode  fs.FileMode = 0o700
	FileMode fs.FileMode = 0o600
)

// Secure makes the data dir private to its owner, whoever made it: it
// creates d (0700) when missing, and takes group and other permissions off
// d and everything in it that has them (symbolic links are left alone).
// It returns what it fixed, for the caller to tell the user (the data dir
// itself by name, the paths in it as a count); an error only when a path
// could not be fixed.
func (d Dir) Secure() ([]string, error) {
	root := string(d)
	if err := os.MkdirAll(root, DirMode); err != nil {
		return nil, fmt.Errorf("data dir %s: %w", root, err)
	}
	var fixed []string
	inside := 0
	err := filepath.WalkDir(root, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // removed while we walked
			}
			return err
		}
		if e.Type()&fs.ModeSymlink != 0 {
			return nil
		}
		info, err := e.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		perm := info.Mode().Perm()
		if perm&0o077 == 0 {
			return nil
		}
		want := perm &^ 0o077
		if e.IsDir() {
			want = DirMode
		} else if want&FileMode != FileMode {
			want |= FileMode
		}
		if err := os.Chmod(path, want); err != nil {
			return fmt.Errorf("make %s private: %w", path, err)
		}
		if path == root {
			fixed = append(fixed, fmt.Sprintf("data dir %s was mode %04o, open to other users: now %04o", path, perm, want))
		} else {
			inside++
		}
		return nil
	})
	if inside > 0 {
		fixed = append(fixed, fmt.Sprintf("%d file(s) and dir(s) in %s were readable by other users: now private (0600 files, 0700 dirs)", inside, root))
	}
	if err != nil {
		return fixed, fmt.Errorf("data dir %s: %w", root, err)
	}
	return fixed, nil
}
