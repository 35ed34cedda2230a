package appliance

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// workTree gives a build its own writable view of the base tree: an
// overlayfs (the base as the read-only lower dir, changes in the work
// dir), so that a rebuild copies nothing; where overlayfs cannot be
// mounted, a copy (cp -a). done unmounts and removes the work dir. A
// work dir is locked while its build runs; ones left by a killed build
// are cleaned up by the next build.
func workTree(ctx context.Context, cacheDir string, base *baseTree, log *slog.Logger) (tree string, done func(), err error) {
	cleanStaleWork(cacheDir, log)
	work, err := os.MkdirTemp(cacheDir, "work-")
	if err != nil {
		return "", nil, fmt.Errorf("appliance build: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(work, ".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err == nil {
		err = syscall.Flock(int(lock.Fd()), syscall.LOCK_EX)
	}
	if err != nil {
		os.RemoveAll(work)
		return "", nil, fmt.Errorf("appliance build: lock work dir: %w", err)
	}
	tree = filepath.Join(work, "root")
	upper, ovl := filepath.Join(work, "upper"), filepath.Join(work, "ovl")
	for _, d := range []string{tree, upper, ovl} {
		if err := os.Mkdir(d, 0o755); err != nil {
			lock.Close()
			os.RemoveAll(work)
			return "", nil, fmt.Errorf("appliance build: %w", err)
		}
	}
	mounted := false
	start := time.Now()
	if !strings.ContainsAny(base.root+work, ",:") {
		opts := "lowerdir=" + base.root + ",upperdir=" + upper + ",workdir=" + ovl
		if err := syscall.Mount("overlay", tree, "overlay", 0, opts); err == nil {
			mounted = true
		} else {
			log.Info("overlayfs unavailable, copying the base tree", "err", err)
		}
	}
	if !mounted {
		os.Remove(tree)
		if out, err := exec.CommandContext(ctx, "cp", "-a", "--reflink=auto", base.root, tree).CombinedOutput(); err != nil {
			lock.Close()
			os.RemoveAll(work)
			return "", nil, fmt.Errorf("appliance build: copy base tree: %v: %s", err, out)
		}
	}
	log.Info("work tree ready", "key", base.key, "overlay", mounted, "took", time.Since(start).Round(time.Millisecond))
	return tree, func() {
		if mounted {
			if err := unmount(tree); err != nil {
				log.Warn("work tree still mounted; left for the next build to clean", "tree", tree, "err", err)
				lock.Close()
				return
			}
		}
		os.RemoveAll(work)
		lock.Close()
	}, nil
}

// unmount unmounts an overlay, detaching it lazily if it is busy.
func unmount(p string) error {
	err := syscall.Unmount(p, 0)
	if errors.Is(err, syscall.EBUSY) {
		err = syscall.Unmount(p, syscall.MNT_DETACH)
	}
	if errors.Is(err, syscall.EINVAL) { // not mounted
		return nil
	}
	return err
}

// cleanStaleWork removes work dirs whose build is gone (their lock is
// free), unmounting their overlay first.
func cleanStaleWork(cacheDir string, log *slog.Logger) {
	dirs, _ := filepath.Glob(filepath.Join(cacheDir, "work-*"))
	for _, w := range dirs {
		lp := filepath.Join(w, ".lock")
		if st, err := os.Stat(lp); err != nil || time.Since(st.ModTime()) < time.Minute {
			continue // being created (not locked yet), or not ours
		}
		f, err := os.OpenFile(lp, os.O_RDWR, 0)
		if err != nil {
			continue
		}
		if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil {
			f.Close()
			continue // its build is running
		}
		if err := unmount(filepath.Join(w, "root")); err == nil {
			os.RemoveAll(w)
			log.Info("removed a stale work dir", "dir", w)
		}
		f.Close()
	}
}
