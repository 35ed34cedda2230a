package filelock_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"ironbark/internal/filelock"
	"ironbark/internal/lab"
)

// TestLockExcludesOtherProcesses holds the lock and asks flock(1), another
// process, to take it without waiting: it must fail until we release.
func TestLockExcludesOtherProcesses(t *testing.T) {
	lab.Require(t, "flock")
	p := filepath.Join(t.TempDir(), ".lock")
	unlock, err := filelock.Lock(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := exec.Command("flock", "-n", p, "true").Run(); err == nil {
		t.Fatal("another process took a held lock")
	}
	unlock()
	if out, err := exec.Command("flock", "-n", p, "true").CombinedOutput(); err != nil {
		t.Fatalf("lock not released: %v %s", err, out)
	}
	if _, err := filelock.Lock(filepath.Join(t.TempDir(), "missing", ".lock")); err == nil || os.IsExist(err) {
		t.Fatal("lock in a missing directory succeeded")
	}
}
