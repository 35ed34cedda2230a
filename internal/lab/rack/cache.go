package rack

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"ironbark/internal/filelock"
)

// The cache holds KIND-KEY.EXT entries (compute-KEY.img, ironbark-KEY.iso,
// frontend-installed-KEY.qcow2, ...), KEY a digest of their inputs: every
// change to the binaries makes a new set of some 6 GiB. A run holds a
// shared lock on ENTRY.use for each entry it uses (the installed
// frontend disk is a running overlay's backing file), whose mtime says
// when it was last used; pruneCache keeps the most recently used per kind
// and removes the others nobody holds.

// cacheKeep is how many entries of a kind pruneCache leaves: this run's
// and the previous one's (a branch and main, or two runs at once).
const cacheKeep = 2

// cachedFile returns path when it exists; otherwise make writes path.tmp,
// which becomes path. One builder at a time, across processes. Either
// way the run then holds path in use until it ends.
func (r *runner) cachedFile(path string, make func(tmp string) error) (hit bool, err error) {
	unlock, err := filelock.Lock(path + ".lock")
	if err != nil {
		return false, err
	}
	defer unlock()
	if _, err := os.Stat(path); err == nil {
		hit = true
	} else {
		tmp := path + ".tmp"
		os.RemoveAll(tmp)
		if err := make(tmp); err != nil {
			os.RemoveAll(tmp)
			return false, err
		}
		if err := os.Rename(tmp, path); err != nil {
			return false, err
		}
	}
	return hit, r.use(path)
}

// use holds a shared lock on path.use until the run ends and marks the
// entry used now.
func (r *runner) use(path string) error {
	release, err := filelock.Shared(path + ".use")
	if err != nil {
		return err
	}
	r.undo.Cleanup(release)
	now := time.Now()
	return os.Chtimes(path+".use", now, now)
}

// prune removes old cache entries and says what it freed.
func (r *runner) prune() {
	removed, err := pruneCache(r.cfg.Cache, cacheKeep)
	if err != nil {
		r.cfg.Log.Warn("rack cache prune", "err", err)
	}
	for _, p := range removed {
		r.say("  cache: removed %s (older than the last %d of its kind)", filepath.Base(p), cacheKeep)
	}
}

// pruneCache removes, per kind, the entries beyond the keep most recently
// used that no run holds; it returns what it removed.
func pruneCache(dir string, keep int) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	type entry struct {
		path string
		used time.Time
	}
	kinds := map[string][]entry{}
	for _, e := range ents {
		kind, ok := cacheKind(e.Name())
		if !ok || !e.Type().IsRegular() {
			continue
		}
		p := filepath.Join(dir, e.Name())
		used, err := lastUsed(p)
		if err != nil {
			return nil, err
		}
		kinds[kind] = append(kinds[kind], entry{p, used})
	}
	var removed []string
	for _, es := range kinds {
		sort.Slice(es, func(i, j int) bool { return es[i].used.After(es[j].used) })
		for _, e := range es[min(keep, len(es)):] {
			gone, err := removeEntry(e.path)
			if err != nil {
				return removed, err
			}
			if gone {
				removed = append(removed, e.path)
			}
		}
	}
	return removed, nil
}

// cacheKind is KIND of KIND-KEY.EXT, KEY 16 hex digits; ok is false for
// any other name (locks, temporaries, the admin's SSH key).
func cacheKind(name string) (string, bool) {
	base, _, _ := strings.Cut(name, ".")
	i := strings.LastIndexByte(base, '-')
	if i <= 0 || len(base)-i-1 != 16 || strings.HasSuffix(name, ".tmp") || strings.HasSuffix(name, ".lock") || strings.HasSuffix(name, ".use") {
		return "", false
	}
	for _, c := range base[i+1:] {
		if !strings.ContainsRune("0123456789abcdef", c) {
			return "", false
		}
	}
	return base[:i], true
}

// lastUsed is the mtime of path.use, or of path for an entry no run has
// marked.
func lastUsed(path string) (time.Time, error) {
	st, err := os.Stat(path + ".use")
	if errors.Is(err, fs.ErrNotExist) {
		st, err = os.Stat(path)
	}
	if err != nil {
		return time.Time{}, err
	}
	return st.ModTime(), nil
}

// removeEntry removes path and its temporary file unless a run uses it or
// is building it. Its empty lock files stay: removing a lock file another
// process has just opened would let two processes hold "the" lock.
func removeEntry(path string) (bool, error) {
	unuse, ok, err := filelock.TryLock(path + ".use")
	if err != nil || !ok {
		return false, err
	}
	defer unuse()
	unbuild, ok, err := filelock.TryLock(path + ".lock")
	if err != nil || !ok {
		return false, err
	}
	defer unbuild()
	for _, p := range []string{path, path + ".tmp"} {
		if err := os.RemoveAll(p); err != nil {
			return false, err
		}
	}
	return true, nil
}
