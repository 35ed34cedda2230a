// Package filelock serialises processes on a lock file (flock(2)): the
// lab cache, the CA and image caches are shared by every process of a
// machine, and only one may fill or change them at a time.
package filelock

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// Lock takes an exclusive lock on path, creating the file, and waits
// while another process holds it. The returned func releases it.
func Lock(path string) (unlock func(), err error) {
	return flock(path, syscall.LOCK_EX)
}

// Shared takes a shared lock on path, creating the file: any number of
// processes may hold it together, and it excludes Lock and TryLock.
// Callers hold it while they use what path guards.
func Shared(path string) (unlock func(), err error) {
	return flock(path, syscall.LOCK_SH)
}

// TryLock takes an exclusive lock on path if nobody holds any lock on
// it; ok is false (and err nil) when someone does.
func TryLock(path string) (unlock func(), ok bool, err error) {
	unlock, err = flock(path, syscall.LOCK_EX|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return nil, false, nil
	}
	return unlock, err == nil, err
}

func flock(path string, how int) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), how); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}
