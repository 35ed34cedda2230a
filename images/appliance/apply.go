package appliance

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path"
	"strconv"
	"strings"
	"time"

	"ironbark/roll"
)

// applyFiles writes the profile's files into tree, in order. Paths are
// resolved inside the tree (os.Root): a symlink in the tree cannot send a
// file to the host. Owners are names from the tree's own /etc/passwd and
// /etc/group, or numbers.
func applyFiles(tree, sourceDir string, files []roll.File) error {
	if len(files) == 0 {
		return nil
	}
	r, err := os.OpenRoot(tree)
	if err != nil {
		return fmt.Errorf("appliance files: %w", err)
	}
	defer r.Close()
	for _, f := range files {
		if f.Source != "" && len(f.Content) == 0 {
			b, err := readSource(sourceDir, f.Source)
			if err != nil {
				return fmt.Errorf("file %s (roll %s, node %s, %s): %w", f.Path, f.Roll, f.Node, f.Pos, err)
			}
			f.Content = b
		}
		if err := applyFile(r, f); err != nil {
			return fmt.Errorf("file %s (roll %s, node %s, %s): %w", f.Path, f.Roll, f.Node, f.Pos, err)
		}
	}
	return nil
}

// readSource reads a file the builder supplies for a profile.
func readSource(dir, name string) ([]byte, error) {
	if dir == "" {
		return nil, fmt.Errorf("src=%s: the builder was given no source directory (Config.SourceDir)", name)
	}
	r, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("src=%s: %w", name, err)
	}
	defer r.Close()
	b, err := r.ReadFile(path.Clean(name))
	if err != nil {
		return nil, fmt.Errorf("src=%s: %w (build it first, e.g. make build)", name, err)
	}
	return b, nil
}

func applyFile(r *os.Root, f roll.File) error {
	name := strings.TrimLeft(path.Clean(f.Path), "/")
	if name == "" || name == "." {
		return errors.New("not a file path")
	}
	mode := f.Mode.Perm() | f.Mode&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky)
	// Unix bits written as numbers (0o4755 in a profile file) mean the same.
	for bit, m := range map[fs.FileMode]fs.FileMode{0o4000: fs.ModeSetuid, 0o2000: fs.ModeSetgid, 0o1000: fs.ModeSticky} {
		if f.Mode&bit != 0 {
			mode |= m
		}
	}
	if mode == 0 {
		mode = 0o644
	}
	uid, gid, err := lookupOwner(r, f.Owner)
	if err != nil {
		return err
	}
	if err := r.MkdirAll(path.Dir(name), 0o755); err != nil {
		return err
	}
	if f.Append {
		w, err := r.OpenFile(name, os.O_CREATE|os.O_WRONLY|os.O_APPEND, mode.Perm())
		if err != nil {
			return err
		}
		if _, err := w.Write(f.Content); err != nil {
			w.Close()
			return err
		}
		if err := w.Close(); err != nil {
			return err
		}
		// An appended-to file keeps its owner and mode unless the node
		// names them.
		if f.Owner == "" && f.Mode == 0 {
			return nil
		}
	} else {
		if st, err := r.Lstat(name); err == nil && (st.IsDir() || st.Mode()&fs.ModeSymlink != 0) {
			if st.IsDir() {
				return errors.New("a directory is in the way")
			}
			if err := r.Remove(name); err != nil {
				return err
			}
		}
		if err := r.WriteFile(name, f.Content, mode.Perm()); err != nil {
			return err
		}
	}
	// chown clears setuid and setgid: owner first, then mode.
	if err := r.Lchown(name, uid, gid); err != nil {
		return err
	}
	return r.Chmod(name, mode)
}

// lookupOwner resolves "user[:group]" with the tree's passwd and group.
func lookupOwner(r *os.Root, owner string) (uid, gid int, err error) {
	if owner == "" {
		return 0, 0, nil
	}
	user, group, hasGroup := strings.Cut(owner, ":")
	uid, ugid, err := lookupID(r, "etc/passwd", user, 2, 3)
	if err != nil {
		return 0, 0, fmt.Errorf("owner %q: %w", owner, err)
	}
	gid = ugid
	if hasGroup {
		if gid, _, err = lookupID(r, "etc/group", group, 2, 2); err != nil {
			return 0, 0, fmt.Errorf("owner %q: %w", owner, err)
		}
	}
	return uid, gid, nil
}

// lookupID finds name (or a number) in a colon file of the tree and
// returns fields idField and gidField as numbers.
func lookupID(r *os.Root, file, name string, idField, gidField int) (int, int, error) {
	if n, err := strconv.Atoi(name); err == nil && n >= 0 {
		return n, n, nil
	}
	b, err := r.ReadFile(file)
	if err != nil {
		return 0, 0, fmt.Errorf("no /%s in the image to look %q up", file, name)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		fl := strings.Split(sc.Text(), ":")
		if len(fl) <= max(idField, gidField) || fl[0] != name {
			continue
		}
		id, err1 := strconv.Atoi(fl[idField])
		g, err2 := strconv.Atoi(fl[gidField])
		if err1 != nil || err2 != nil {
			return 0, 0, fmt.Errorf("bad /%s line for %q", file, name)
		}
		return id, g, nil
	}
	return 0, 0, fmt.Errorf("%q is not in the image's /%s (a package or an earlier script must create it)", name, file)
}

// runScripts runs each post script inside the tree with chroot, in a
// private mount namespace (unshare -m) that has /proc, /sys and /dev, so
// nothing stays mounted when a script ends or the build is cancelled.
func runScripts(ctx context.Context, tree string, scripts []roll.Script, epoch time.Time, log *slog.Logger) ([]ScriptRun, error) {
	if len(scripts) == 0 {
		return nil, nil
	}
	r, err := os.OpenRoot(tree)
	if err != nil {
		return nil, fmt.Errorf("appliance scripts: %w", err)
	}
	defer r.Close()
	// Services must not start inside the build (Debian's policy-rc.d).
	policy := "usr/sbin/policy-rc.d"
	if _, err := r.Lstat("usr/sbin"); err == nil {
		if _, err := r.Lstat(policy); errors.Is(err, fs.ErrNotExist) {
			if err := r.WriteFile(policy, []byte("#!/bin/sh\nexit 101\n"), 0o755); err != nil {
				return nil, fmt.Errorf("appliance scripts: %w", err)
			}
			defer r.Remove(policy)
		}
	}
	if err := r.MkdirAll("tmp", 0o777); err != nil {
		return nil, fmt.Errorf("appliance scripts: %w", err)
	}
	var runs []ScriptRun
	for i, s := range scripts {
		name := fmt.Sprintf("tmp/ironbark-post-%03d", i)
		if err := r.WriteFile(name, []byte(s.Body), 0o700); err != nil {
			return runs, fmt.Errorf("appliance scripts: %w", err)
		}
		interp := s.Interpreter
		if interp == "" {
			interp = "/bin/sh"
		}
		inner := `set -e
t=$1; shift
for d in proc sys dev; do mkdir -p "$t/$d"; done
mount -t proc proc "$t/proc"
mount -t sysfs sysfs "$t/sys"
mount --rbind /dev "$t/dev"
exec chroot "$t" "$@"`
		cmd := exec.CommandContext(ctx, "unshare", "--mount", "--propagation", "private", "--",
			"/bin/sh", "-c", inner, "sh", tree, interp, "/"+name)
		killGroup(cmd)
		cmd.Env = []string{
			"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "LC_ALL=C",
			"SOURCE_DATE_EPOCH=" + strconv.FormatInt(epoch.Unix(), 10), "DEBIAN_FRONTEND=noninteractive",
			"IRONBARK_NODE=" + s.Node, "IRONBARK_ROLL=" + s.Roll,
		}
		start := time.Now()
		out, err := cmd.CombinedOutput()
		r.Remove(name)
		if err != nil {
			if ctx.Err() != nil {
				return runs, ctx.Err()
			}
			return runs, &ScriptError{Script: s, Output: string(out), Err: err}
		}
		log.Info("post script", "roll", s.Roll, "node", s.Node, "pos", s.Pos, "took", time.Since(start).Round(time.Millisecond))
		runs = append(runs, ScriptRun{Origin: s.Origin, Output: string(out)})
	}
	return runs, nil
}
