package images

import (
	"archive/tar"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"ironbark/controller"
	"ironbark/images/blobstore"
	"ironbark/internal/lab"
	"ironbark/internal/store"
	"ironbark/internal/store/storetest"
)

// rootfs makes a tiny tree with a fake kernel in /boot.
func rootfs(t *testing.T) string {
	dir := filepath.Join(t.TempDir(), "rootfs")
	for _, d := range []string{"boot", "etc", "sbin"} {
		os.MkdirAll(filepath.Join(dir, d), 0o755)
	}
	kernel := make([]byte, 4096)
	copy(kernel[0x202:], "HdrS")
	os.WriteFile(filepath.Join(dir, "boot/vmlinuz-6.1.0-test"), kernel, 0o644)
	os.WriteFile(filepath.Join(dir, "boot/initrd.img-6.1.0-test"), []byte("070701-fake-cpio"), 0o644)
	os.WriteFile(filepath.Join(dir, "etc/hostname"), []byte("emi\n"), 0o644)
	os.Symlink("/boot/vmlinuz-6.1.0-test", filepath.Join(dir, "vmlinuz"))
	return dir
}

func blobCount(t *testing.T, s *blobstore.Store) int {
	ds, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	return len(ds)
}

func TestBuildFSWithKernelAndRamdisk(t *testing.T) {
	if _, err := exec.LookPath("e2fsck"); err != nil {
		lab.Missing(t, "e2fsck missing (apt-get install e2fsprogs)")
	}
	dir := t.TempDir()
	res, err := Build(context.Background(), BuildSpec{From: rootfs(t), Out: filepath.Join(dir, "emi.img"),
		KernelOut: filepath.Join(dir, "eki"), RamdiskOut: filepath.Join(dir, "eri")})
	if err != nil {
		t.Fatal(err)
	}
	if res.Kernel != "boot/vmlinuz-6.1.0-test" || res.Ramdisk != "boot/initrd.img-6.1.0-test" {
		t.Fatalf("boot files: %+v", res)
	}
	if out, err := exec.Command("e2fsck", "-fn", filepath.Join(dir, "emi.img")).CombinedOutput(); err != nil {
		t.Fatalf("e2fsck: %v\n%s", err, out)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "eri")); string(b) != "070701-fake-cpio" {
		t.Fatalf("eri = %q", b)
	}
	if err := checkKernel(filepath.Join(dir, "eki")); err != nil {
		t.Fatal(err)
	}
}

func TestBuildRejectsEscapingTar(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "evil.tar")
	f, _ := os.Create(p)
	tw := tar.NewWriter(f)
	tw.WriteHeader(&tar.Header{Name: "../../etc/passwd", Typeflag: tar.TypeReg, Size: 1, Mode: 0o644})
	tw.Write([]byte("x"))
	tw.Close()
	f.Close()
	_, err := Build(context.Background(), BuildSpec{From: p, Out: filepath.Join(dir, "out.img")})
	if err == nil || !strings.Contains(err.Error(), "escapes the tree") {
		t.Fatalf("err = %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "out.img")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("partial output left: %v", err)
	}
}

func TestImport(t *testing.T) {
	if _, err := exec.LookPath("qemu-img"); err != nil {
		lab.Missing(t, "qemu-img missing (apt-get install qemu-utils)")
	}
	ctx := context.Background()
	dir := t.TempDir()
	raw := filepath.Join(dir, "debian.img")
	if _, err := Build(ctx, BuildSpec{From: rootfs(t), Out: raw, Size: 64 << 20}); err != nil {
		t.Fatal(err)
	}
	qcow := filepath.Join(dir, "debian.qcow2")
	if out, err := exec.Command("qemu-img", "convert", "-O", "qcow2", raw, qcow).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img convert: %v %s", err, out)
	}
	b, _ := os.ReadFile(qcow)
	corrupt := filepath.Join(dir, "corrupt.qcow2")
	os.WriteFile(corrupt, b[:len(b)/3], 0o644)
	badHeader := filepath.Join(dir, "badheader.qcow2")
	hb := append([]byte(nil), b[:4096]...)
	hb[4], hb[5], hb[6], hb[7] = 0, 0, 0, 9 // qcow2 version 9
	os.WriteFile(badHeader, hb, 0o644)
	kernel := filepath.Join(rootfs(t), "boot/vmlinuz-6.1.0-test")

	storetest.Each(t, controller.Migrations(), func(t *testing.T, db *store.DB) {
		cat, err := controller.OpenImageCatalog(ctx, db)
		if err != nil {
			t.Fatal(err)
		}
		blobs, err := blobstore.Open(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		eki, err := Import(ctx, cat, blobs, ImportSpec{File: kernel, Kind: KindKernel, Name: "vmlinuz-6.1"})
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(eki.ID, "eki-") {
			t.Fatalf("kernel id %s", eki.ID)
		}
		emi, err := Import(ctx, cat, blobs, ImportSpec{File: raw, KernelID: eki.ID})
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(emi.ID, "emi-") || emi.Format != "raw" {
			t.Fatalf("raw import: %+v", emi)
		}
		q, err := Import(ctx, cat, blobs, ImportSpec{File: qcow, Name: "debian-qcow2"})
		if err != nil || q.Format != "qcow2" {
			t.Fatalf("qcow2 import: %+v %v", q, err)
		}
		n := blobCount(t, blobs)
		for name, spec := range map[string]ImportSpec{
			"truncated qcow2": {File: corrupt},
			"bad header":      {File: badHeader},
			"not a kernel":    {File: raw, Kind: KindKernel, Name: "not-a-kernel"},
			"not a ramdisk":   {File: raw, Kind: KindRamdisk, Name: "not-a-ramdisk"},
		} {
			if _, err := Import(ctx, cat, blobs, spec); !errors.Is(err, ErrBadImage) {
				t.Errorf("%s: err = %v, want ErrBadImage", name, err)
			} else {
				t.Logf("%s: %v", name, err)
			}
		}
		// A registration failure (the name is taken) removes the new blob.
		other := filepath.Join(t.TempDir(), "debian.img")
		os.WriteFile(other, append(b[:0:0], make([]byte, 1<<20)...), 0o644)
		if _, err := Import(ctx, cat, blobs, ImportSpec{File: other, Name: "debian"}); err == nil {
			t.Fatal("duplicate name registered")
		}
		if got := blobCount(t, blobs); got != n {
			t.Fatalf("%d blobs after failed imports, want %d", got, n)
		}
		list, err := List(ctx, cat, blobs)
		if err != nil {
			t.Fatal(err)
		}
		if len(list) != 3 || !list[0].BlobPresent {
			t.Fatalf("list: %+v", list)
		}
	})
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"4G": 4 << 30, "512M": 512 << 20, "1GiB": 1 << 30, "100": 100, "1.5G": 3 << 29} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v", in, got, err)
		}
	}
	if _, err := ParseSize("lots"); err == nil {
		t.Error("ParseSize(lots) succeeded")
	}
}

func TestNameFromFile(t *testing.T) {
	if got := NameFromFile("/x/debian 12:amd64.qcow2"); got != "debian 12-amd64" {
		t.Errorf("got %q", got)
	}
}
