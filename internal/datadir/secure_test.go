package datadir

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// AssertPrivate fails t for every path under root that group or others
// may read, write or enter.
func assertPrivate(t *testing.T, root string) {
	t.Helper()
	err := filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.Type()&fs.ModeSymlink != 0 {
			return err
		}
		info, err := e.Info()
		if err != nil {
			return err
		}
		if info.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s is mode %04o", p, info.Mode().Perm())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestSecureMakesMissingDirPrivate(t *testing.T) {
	root := filepath.Join(t.TempDir(), "data")
	fixed, err := Dir(root).Secure()
	if err != nil || len(fixed) != 0 {
		t.Fatalf("new dir: %v %v", fixed, err)
	}
	assertPrivate(t, root)
}

func TestSecureFixesAnOpenDir(t *testing.T) {
	root := filepath.Join(t.TempDir(), "data")
	os.MkdirAll(filepath.Join(root, "images", "blobs"), 0o755)
	os.WriteFile(filepath.Join(root, "ironbark.db"), []byte("x"), 0o644)
	os.WriteFile(filepath.Join(root, "images", "blobs", "b"), []byte("x"), 0o664)
	os.WriteFile(filepath.Join(root, "tool"), []byte("x"), 0o755)
	os.Symlink("/etc/passwd", filepath.Join(root, "link"))
	for _, p := range []string{root, filepath.Join(root, "images"), filepath.Join(root, "images", "blobs")} {
		os.Chmod(p, 0o755) // whatever the umask made
	}
	fixed, err := Dir(root).Secure()
	if err != nil {
		t.Fatal(err)
	}
	if len(fixed) != 2 || !strings.Contains(fixed[0], "data dir "+root+" was mode 0755") || !strings.HasPrefix(fixed[1], "5 file(s)") {
		t.Fatalf("reported %q", fixed)
	}
	assertPrivate(t, root)
	if info, _ := os.Stat(filepath.Join(root, "tool")); info.Mode().Perm() != 0o700 {
		t.Errorf("executable: %04o, want 0700", info.Mode().Perm())
	}
	if info, _ := os.Stat("/etc/passwd"); info.Mode().Perm()&0o044 == 0 {
		t.Error("a symlink's target was changed")
	}
	if fixed, _ := Dir(root).Secure(); len(fixed) != 0 {
		t.Errorf("second pass fixed %q", fixed)
	}
}
