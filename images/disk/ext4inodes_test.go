package disk

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"testing"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/ext4"
)

// TestFillInodeChecksums: go-diskfs cannot read a filesystem as WriteExt4
// leaves it (no metadata_csum, zero inode checksums); with the checksums
// filled it reads it, e2fsck still finds it clean, and cleared again it
// is byte for byte what WriteExt4 wrote.
func TestFillInodeChecksums(t *testing.T) {
	requireTools(t, "e2fsck")
	img, _ := buildExt4(t, DirSource(sampleTree(t)), 0, FSOptions{})
	orig, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	read := func() error {
		fs, err := ext4.Read(file.New(f, true), int64(len(orig)), 0, 512)
		if err != nil {
			return err
		}
		b, err := fs.ReadFile("etc/hostname")
		if err == nil && string(b) != "node-0\n" {
			t.Errorf("etc/hostname through go-diskfs: %q", b)
		}
		return err
	}
	if err := read(); err == nil {
		t.Log("go-diskfs reads a filesystem without inode checksums now: FillInodeChecksums may be unneeded")
	}
	if err := FillInodeChecksums(f, 0, true); err != nil {
		t.Fatal(err)
	}
	if err := read(); err != nil {
		t.Fatalf("go-diskfs on the filled filesystem: %v", err)
	}
	fsck(t, img)
	if err := FillInodeChecksums(f, 0, false); err != nil {
		t.Fatal(err)
	}
	if now, _ := os.ReadFile(img); !bytes.Equal(now, orig) {
		t.Fatal("cleared again, the filesystem differs from what WriteExt4 wrote")
	}
}

// TestFillInodeChecksumsRefusesCsum: a filesystem with metadata_csum
// keeps its real checksums.
func TestFillInodeChecksumsRefusesCsum(t *testing.T) {
	requireTools(t, "mkfs.ext4")
	img := t.TempDir() + "/csum.img"
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 16<<20); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-O", "metadata_csum", img).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v\n%s", err, out)
	}
	orig, _ := os.ReadFile(img)
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := FillInodeChecksums(f, 0, true); !errors.Is(err, ErrExt4Checksums) {
		t.Fatalf("FillInodeChecksums on metadata_csum: %v, want ErrExt4Checksums", err)
	}
	if now, _ := os.ReadFile(img); !bytes.Equal(now, orig) {
		t.Fatal("a refused fill changed the filesystem")
	}
}
