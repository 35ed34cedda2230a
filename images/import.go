package images

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"ironbark/controller"
	"ironbark/images/blobstore"
)

// Kinds of image, as the controller names them.
const (
	KindMachine = controller.KindMachine
	KindKernel  = controller.KindKernel
	KindRamdisk = controller.KindRamdisk
)

// ErrBadImage marks a file that is not a valid image of its kind.
var ErrBadImage = errors.New("not a valid image")

// ImportSpec describes `ironbark image import`.
type ImportSpec struct {
	File        string
	Kind        string // machine (default), kernel, ramdisk
	Name        string // default: derived from the file name
	Description string
	Owner       string // account id or name; empty: the admin account
	KernelID    string // machine images: eki-... to boot with
	RamdiskID   string // machine images: eri-...
	Public      bool
}

// Imported says what was registered.
type Imported struct {
	ID     string
	Digest blobstore.Digest
	Size   int64
	Format string // raw | qcow2
}

// Import validates a file, ingests it into the blob store and registers
// it in the catalog. When registration
// fails, a blob this import added is removed again: nothing is left
// registered or half-stored.
func Import(ctx context.Context, cat Catalog, blobs *blobstore.Store, s ImportSpec) (*Imported, error) {
	if s.Kind == "" {
		s.Kind = KindMachine
	}
	st, err := os.Stat(s.File)
	if err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("import %s: not a regular file", s.File)
	}
	format := "raw"
	switch s.Kind {
	case KindMachine:
		if format, err = CheckDiskImage(ctx, s.File); err != nil {
			return nil, err
		}
	case KindKernel:
		if err := checkKernel(s.File); err != nil {
			return nil, err
		}
	case KindRamdisk:
		if err := checkRamdisk(s.File); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("import: unknown kind %q (machine, kernel, ramdisk)", s.Kind)
	}
	if s.Name == "" {
		s.Name = NameFromFile(s.File)
	}
	// Remember whether the blob was there before: only a blob this import
	// added may be removed on failure (other images may share it).
	digest, size, err := blobs.PutFile(ctx, s.File)
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", s.File, err)
	}
	existed := false
	if n, lerr := cat.CountDigest(ctx, string(digest)); lerr == nil && n > 0 {
		existed = true
	}
	id, err := cat.Register(ctx, controller.ImageRecord{
		Owner: s.Owner, Name: s.Name, Description: s.Description, Kind: s.Kind,
		Digest: string(digest), Size: size, Format: format,
		KernelID: s.KernelID, RamdiskID: s.RamdiskID, Public: s.Public,
	})
	if err != nil {
		if !existed {
			_ = blobs.Delete(digest)
		}
		return nil, fmt.Errorf("import %s: %w", s.File, err)
	}
	return &Imported{ID: id, Digest: digest, Size: size, Format: format}, nil
}

// NameFromFile derives an image name from a file name: the base name
// without the usual image extensions, restricted to what EC2 allows.
func NameFromFile(p string) string {
	n := filepath.Base(p)
	for _, ext := range []string{".qcow2", ".img", ".raw", ".ext4", ".disk", ".bin"} {
		n = strings.TrimSuffix(n, ext)
	}
	return controller.CleanImageName(n)
}

// qemuImgInfo is the part of `qemu-img info --output json` we read.
type qemuImgInfo struct {
	Format      string `json:"format"`
	VirtualSize int64  `json:"virtual-size"`
	ActualSize  int64  `json:"actual-size"`
	BackingFile string `json:"backing-filename"`
	Encrypted   bool   `json:"encrypted"`
}

// CheckDiskImage validates a machine image with qemu-img (the real
// parser of these formats) and returns "raw" or "qcow2". A qcow2 must
// pass `qemu-img check`, have no backing file and not be encrypted.
func CheckDiskImage(ctx context.Context, file string) (string, error) {
	if _, err := exec.LookPath("qemu-img"); err != nil {
		return "", fmt.Errorf("import: qemu-img not found (apt-get install qemu-utils): %w", err)
	}
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "qemu-img", "info", "--output", "json", file)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("import %s: %w: qemu-img info: %s", file, ErrBadImage, strings.TrimSpace(stderr.String()))
	}
	var info qemuImgInfo
	if err := json.Unmarshal(out, &info); err != nil {
		return "", fmt.Errorf("import %s: qemu-img info output: %w", file, err)
	}
	switch info.Format {
	case "raw":
		if info.VirtualSize < 512 {
			return "", fmt.Errorf("import %s: %w: raw image of %d bytes", file, ErrBadImage, info.VirtualSize)
		}
		return "raw", nil
	case "qcow2":
		if info.BackingFile != "" {
			return "", fmt.Errorf("import %s: %w: qcow2 with a backing file (%s); flatten it with qemu-img convert", file, ErrBadImage, info.BackingFile)
		}
		if info.Encrypted {
			return "", fmt.Errorf("import %s: %w: encrypted qcow2", file, ErrBadImage)
		}
		chk := exec.CommandContext(ctx, "qemu-img", "check", "-q", "-f", "qcow2", file)
		if b, err := chk.CombinedOutput(); err != nil {
			return "", fmt.Errorf("import %s: %w: qemu-img check: %s", file, ErrBadImage, strings.TrimSpace(string(b)))
		}
		return "qcow2", nil
	}
	return "", fmt.Errorf("import %s: %w: format %s (raw and qcow2 are supported; qemu-img convert -O qcow2)", file, ErrBadImage, info.Format)
}

// checkKernel wants an x86 bzImage ("HdrS" at 0x202).
func checkKernel(file string) error {
	b, err := readHead(file, 0x206)
	if err != nil {
		return err
	}
	if len(b) < 0x206 || string(b[0x202:0x206]) != "HdrS" {
		return fmt.Errorf("import %s: %w: not a Linux bzImage kernel", file, ErrBadImage)
	}
	return nil
}

// checkRamdisk wants a cpio archive, plain or gzip/zstd/xz/lz4/bzip2.
func checkRamdisk(file string) error {
	b, err := readHead(file, 6)
	if err != nil {
		return err
	}
	for _, magic := range []string{"070701", "070702", "\x1f\x8b", "\x28\xb5\x2f\xfd", "\xfd7zXZ", "\x02\x21\x4c\x18", "BZh"} {
		if bytes.HasPrefix(b, []byte(magic)) {
			return nil
		}
	}
	return fmt.Errorf("import %s: %w: not an initramfs (cpio, gzip, zstd, xz, lz4 or bzip2)", file, ErrBadImage)
}

func readHead(file string, n int) ([]byte, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	defer f.Close()
	b := make([]byte, n)
	m, err := io.ReadFull(f, b)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("import: %w", err)
	}
	return b[:m], nil
}
