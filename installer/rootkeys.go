package installer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/disk"
	"github.com/diskfs/go-diskfs/filesystem"

	imgdisk "ironbark/images/disk"

	"ironbark/internal/sshkeys"
)

// Where root's keys live in the installed root filesystem (go-diskfs's
// ext4 takes paths relative to the filesystem's root).
const (
	rootSSHDir   = "root/.ssh"
	rootKeysFile = rootSSHDir + "/authorized_keys"
)

// ErrNoRootFS is returned (wrapped) by WriteAuthorizedKeys for a disk with
// no ext4 root filesystem (one with /etc) to write into.
var ErrNoRootFS = errors.New("no ext4 root filesystem on the disk")

// WriteAuthorizedKeys merges keys (authorized_keys lines, the profile's
// AuthorizedKeys) into root's ~/.ssh/authorized_keys on the installed
// disk's root filesystem with go-diskfs: the keys the image carries stay,
// each new key is added once, the directory is made 0700 and the file
// 0600, both root's. keys are checked before anything is written: a line
// that does not parse leaves the disk as it was. It returns how many keys
// were added.
//
// go-diskfs's ext4 has no rename and its Remove miscounts free blocks,
// so the file is never replaced: the merged text keeps the old one as
// its prefix and is written over it in one write, only extending it.
func WriteAuthorizedKeys(diskPath, keys string) (int, error) {
	add, err := sshkeys.Parse(keys)
	if err != nil {
		return 0, fmt.Errorf("root's ssh keys: %w", err)
	}
	d, err := diskfs.Open(diskPath, diskfs.WithOpenMode(diskfs.ReadWrite))
	if err != nil {
		return 0, fmt.Errorf("open %s: %w", diskPath, err)
	}
	defer d.Close()
	root, done, err := rootFS(d)
	if err != nil {
		return 0, fmt.Errorf("root's ssh keys on %s: %w", diskPath, err)
	}
	n, err := mergeKeys(root, keys, add)
	if derr := done(); err == nil && derr != nil {
		return 0, fmt.Errorf("root's ssh keys on %s: %w", diskPath, derr)
	}
	return n, err
}

func mergeKeys(root filesystem.FileSystem, keys string, add []sshkeys.Key) (int, error) {
	if err := root.Mkdir(rootSSHDir); err != nil {
		return 0, fmt.Errorf("mkdir /%s: %w", rootSSHDir, err)
	}
	// go-diskfs's Stat says "does not exist" in words only: look in the
	// directory instead.
	ents, err := root.ReadDir(rootSSHDir)
	if err != nil {
		return 0, fmt.Errorf("read /%s: %w", rootSSHDir, err)
	}
	var old []byte
	for _, e := range ents {
		if e.Name() != path.Base(rootKeysFile) {
			continue
		}
		if !e.Type().IsRegular() {
			return 0, fmt.Errorf("/%s in the image is not a regular file (%s)", rootKeysFile, e.Type())
		}
		if old, err = root.ReadFile(rootKeysFile); err != nil {
			return 0, fmt.Errorf("read /%s: %w", rootKeysFile, err)
		}
	}
	merged, changed, err := sshkeys.Merge(string(old), keys)
	if err != nil {
		return 0, fmt.Errorf("root's ssh keys: %w", err)
	}
	added := 0
	if changed {
		if !strings.HasPrefix(merged, string(old)) {
			return 0, fmt.Errorf("root's ssh keys: the merge would rewrite /%s", rootKeysFile)
		}
		w, err := root.OpenFile(rootKeysFile, os.O_CREATE|os.O_RDWR)
		if err != nil {
			return 0, fmt.Errorf("open /%s: %w", rootKeysFile, err)
		}
		if _, err := w.Write([]byte(merged)); err != nil {
			w.Close()
			return 0, fmt.Errorf("write /%s: %w", rootKeysFile, err)
		}
		if err := w.Close(); err != nil {
			return 0, fmt.Errorf("write /%s: %w", rootKeysFile, err)
		}
		have, _ := sshkeys.Parse(string(old))
		added = countNew(have, add)
	}
	for _, p := range []struct {
		name string
		mode os.FileMode
	}{{rootSSHDir, 0o700}, {rootKeysFile, 0o600}} {
		if err := root.Chmod(p.name, p.mode); err != nil {
			return 0, fmt.Errorf("chmod /%s: %w", p.name, err)
		}
		if err := root.Chown(p.name, 0, 0); err != nil {
			return 0, fmt.Errorf("chown /%s: %w", p.name, err)
		}
	}
	return added, nil
}

// countNew counts the distinct keys of add that have no key of the same
// type and body in have.
func countNew(have, add []sshkeys.Key) int {
	seen := map[string]bool{}
	for _, k := range have {
		seen[k.Type+" "+k.Blob] = true
	}
	n := 0
	for _, k := range add {
		if id := k.Type + " " + k.Blob; !seen[id] {
			seen[id] = true
			n++
		}
	}
	return n
}

// rootFS finds the installed system's root: the first ext4 partition
// that holds /etc, ready for go-diskfs to edit; done puts back what
// opening it changed. One whose journal needs recovery (an image taken
// from a running system) is refused: writing past the journal would lose
// to its replay.
func rootFS(d *disk.Disk) (_ filesystem.FileSystem, done func() error, err error) {
	table, err := d.GetPartitionTable()
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrNoRootFS, err)
	}
	rw, err := d.Backend.Writable()
	if err != nil {
		return nil, nil, err
	}
	for i, p := range table.GetPartitions() {
		if p == nil || p.GetSize() == 0 {
			continue
		}
		var sb [0x66]byte
		if _, err := d.Backend.ReadAt(sb[:], p.GetStart()+1024); err != nil && !errors.Is(err, io.EOF) {
			return nil, nil, fmt.Errorf("partition %d: superblock: %w", i+1, err)
		}
		if binary.LittleEndian.Uint16(sb[0x38:]) != 0xEF53 {
			continue
		}
		// An image without metadata_csum (as images/disk writes them)
		// gets inode checksums for go-diskfs to read it by, cleared again
		// when done.
		done := func() error { return nil }
		switch err := imgdisk.FillInodeChecksums(rw, p.GetStart(), true); {
		case err == nil:
			start := p.GetStart()
			done = func() error { return imgdisk.FillInodeChecksums(rw, start, false) }
		case !errors.Is(err, imgdisk.ErrExt4Checksums):
			return nil, nil, fmt.Errorf("partition %d: %w", i+1, err)
		}
		f, err := d.GetFilesystem(i + 1)
		if err != nil || f.Type() != filesystem.TypeExt4 {
			if derr := done(); derr != nil {
				return nil, nil, derr
			}
			continue
		}
		if st, err := f.Stat("etc"); err != nil || !st.IsDir() {
			if derr := done(); derr != nil {
				return nil, nil, derr
			}
			continue
		}
		if binary.LittleEndian.Uint32(sb[0x60:])&0x4 != 0 {
			if derr := done(); derr != nil {
				return nil, nil, derr
			}
			return nil, nil, fmt.Errorf("partition %d: its ext4 journal needs recovery (the image was taken from a mounted filesystem)", i+1)
		}
		return f, done, nil
	}
	return nil, nil, ErrNoRootFS
}
