package main

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// assertPrivate fails t for every path under root that group or others
// may read, write or enter.
func assertPrivate(t *testing.T, root string) {
	t.Helper()
	n := 0
	err := filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.Type()&fs.ModeSymlink != 0 {
			return err
		}
		info, err := e.Info()
		if err != nil {
			return err
		}
		n++
		if info.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s is mode %04o", p, info.Mode().Perm())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 2 {
		t.Fatalf("%s holds nothing: the command made no data dir", root)
	}
}

// Every command that makes the data dir makes it 0700 and every file in
// it 0600, whatever the umask; so does the controller's first start.
func TestDataDirModes(t *testing.T) {
	for _, args := range [][]string{
		{"account", "create", "alice"},
		{"cluster", "add", "c1"},
		{"cluster", "list"},
		{"node", "list"},
		{"image", "list"},
		{"host", "add", "compute-0-0", "--mac", "52:54:00:00:00:01", "--ip", "10.1.0.10"},
		{"roll", "list"},
	} {
		t.Run(strings.Join(args, "-"), func(t *testing.T) {
			data := filepath.Join(t.TempDir(), "data")
			mustRun(t, append(args, "--data-dir", data)...)
			assertPrivate(t, data)
		})
	}
	t.Run("controller", func(t *testing.T) {
		data := filepath.Join(t.TempDir(), "data")
		startControllerIn(t, data, "--listen", "127.0.0.1:0", "--node-listen", "127.0.0.1:0")
		mustRun(t, "account", "create", "bob", "--data-dir", data)
		assertPrivate(t, data)
		for _, f := range []string{"ironbark.db", "secret.key", "credentials/admin/eucarc", "pki/ca.key"} {
			if _, err := os.Stat(filepath.Join(data, f)); err != nil {
				t.Errorf("controller made no %s: %v", f, err)
			}
		}
	})
}

// A data dir someone made open (make run's mkdir under umask 022 did) is
// made private on the next command, which says so.
func TestOpenDataDirIsFixed(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	mustRun(t, "account", "create", "alice", "--data-dir", data)
	os.Chmod(data, 0o755)
	os.Chmod(filepath.Join(data, "ironbark.db"), 0o644)
	_, stderr, code := ironbark(t, "cluster", "list", "--data-dir", data)
	if code != 0 || !strings.Contains(stderr, "data dir "+data+" was mode 0755") || !strings.Contains(stderr, "1 file(s)") {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	assertPrivate(t, data)
}
