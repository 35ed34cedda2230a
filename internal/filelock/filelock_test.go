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

// TestSharedAndTryLock: shared holders coexist (flock -s from another
// process succeeds) and keep TryLock out; TryLock says so without
// waiting, and succeeds once they are gone.
func TestSharedAndTryLock(t *testing.T) {
	lab.Require(t, "flock")
	p := filepath.Join(t.TempDir(), ".use")
	unlock, err := filelock.Shared(p)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("flock", "-n", "-s", p, "true").CombinedOutput(); err != nil {
		t.Fatalf("a second shared holder was refused: %v %s", err, out)
	}
	if err := exec.Command("flock", "-n", p, "true").Run(); err == nil {
		t.Fatal("another process took an exclusive lock over a shared one")
	}
	// flock(2) locks belong to the open file: a TryLock of this process
	// through its own open is refused too.
	if _, ok, err := filelock.TryLock(p); ok || err != nil {
		t.Fatalf("TryLock over a shared holder: ok=%v err=%v", ok, err)
	}
	unlock()
	u2, ok, err := filelock.TryLock(p)
	if !ok || err != nil {
		t.Fatalf("TryLock of a free lock: ok=%v err=%v", ok, err)
	}
	if err := exec.Command("flock", "-n", "-s", p, "true").Run(); err == nil {
		t.Fatal("a shared lock was granted over TryLock's exclusive one")
	}
	u2()
}
