package frontend_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"ironbark/images/iso"
	"ironbark/installer/frontend"
	"ironbark/installer/frontend/frontendtest"
	"ironbark/internal/lab"
	"ironbark/internal/store"
	"ironbark/pxe"
)

// carriedMedium lays out what the ISO carries (images/NAME.img and the
// manifest) in a directory, as the installer sees the mounted medium.
func carriedMedium(t *testing.T, images map[string][]byte) string {
	t.Helper()
	dir := t.TempDir()
	host := map[string]string{}
	for n, b := range images {
		p := filepath.Join(t.TempDir(), n+".img")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		host[n] = p
	}
	s, _, err := frontend.Carry(iso.Spec{}, host, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for dst, src := range s.Extra {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, dst)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, dst), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestManifestRefusesBadMedia(t *testing.T) {
	if _, err := frontend.NewManifest(map[string]string{"frontend": "/dev/null"}); err == nil {
		t.Error("the frontend image was accepted as a carried appliance")
	}
	if _, err := frontend.NewManifest(map[string]string{"Bad Name": "/dev/null"}); err == nil {
		t.Error("an invalid appliance name was accepted")
	}
	// No manifest: nothing carried.
	if apps, err := frontend.ReadManifest(t.TempDir()); err != nil || apps != nil {
		t.Errorf("no manifest: %v %v", apps, err)
	}
	// An image whose size is not the manifest's (a truncated copy).
	dir := carriedMedium(t, map[string][]byte{"compute": bytes.Repeat([]byte("x"), 4096)})
	if err := os.Truncate(filepath.Join(dir, "images/compute.img"), 100); err != nil {
		t.Fatal(err)
	}
	if _, err := frontend.ReadManifest(dir); err == nil || !strings.Contains(err.Error(), "4096") {
		t.Errorf("truncated image: %v", err)
	}
}

// TestInstallRegistersCarriedAppliance: the install puts the medium's
// compute image into the frontend's image store and makes it what
// compute installs (beside the medium's installer as the PXE boot files);
// a damaged image fails the install with the manifest's digest.
func TestInstallRegistersCarriedAppliance(t *testing.T) {
	lab.Require(t, "sfdisk", "debugfs", "e2fsck")
	compute := make([]byte, 3<<20+123)
	if _, err := rand.Read(compute); err != nil {
		t.Fatal(err)
	}
	medium := carriedMedium(t, map[string][]byte{"compute": compute})
	apps, err := frontend.ReadManifest(medium)
	if err != nil || len(apps) != 1 {
		t.Fatalf("manifest: %+v %v", apps, err)
	}
	kernel, initrd := filepath.Join(medium, "vmlinuz"), filepath.Join(medium, "initrd.img")
	for _, f := range []string{kernel, initrd} {
		if err := os.WriteFile(f, []byte("boot file "+filepath.Base(f)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	img := frontendtest.Image(t, dir, frontendtest.ImageSpec{})
	target := frontendtest.BlankDisk(t, dir, 512<<20)
	md := frontend.Medium{Image: frontend.Image{Path: img}, Appliances: apps, InstallerDir: medium}
	var logBuf bytes.Buffer
	if err := frontend.Install(context.Background(), frontendtest.Answers(target), frontendtest.TwoNICs(), md,
		slog.New(slog.NewTextHandler(&logBuf, nil)), nil); err != nil {
		t.Fatalf("%v\n%s", err, logBuf.String())
	}
	_, parts := Partitions(t, target)
	fsImg := extract(t, target, parts[len(parts)-1])
	if out, err := exec.Command("e2fsck", "-fn", fsImg).CombinedOutput(); err != nil {
		t.Fatalf("e2fsck: %v\n%s", err, out)
	}
	d := apps[0].Digest
	if got := debugfsCat(t, fsImg, "/images/blobs/sha256/"+d.Hex()); got != string(compute) {
		t.Fatalf("blob %s in the data partition: %d bytes, want the image's %d", d, len(got), len(compute))
	}
	for _, f := range []string{"vmlinuz", "installer.img"} {
		if got := debugfsCat(t, fsImg, "/pxe/boot/"+f); !strings.HasPrefix(got, "boot file ") {
			t.Errorf("pxe/boot/%s: %q", f, got)
		}
	}
	dbFile := filepath.Join(t.TempDir(), "ironbark.db")
	if out, err := exec.Command("debugfs", "-R", "dump /ironbark.db "+dbFile, fsImg).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	db, err := store.Open(context.Background(), dbFile)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	gotD, size, err := (&pxe.BlobImages{DB: db}).Image(context.Background(), "compute")
	if err != nil || gotD != d || size != int64(len(compute)) {
		t.Fatalf("compute installs %s (%d bytes) %v; want %s", gotD, size, err, d)
	}

	// A medium whose image was damaged after the manifest was made.
	bad := make([]byte, len(compute))
	copy(bad, compute)
	bad[len(bad)/2] ^= 1
	if err := os.WriteFile(apps[0].File, bad, 0o644); err != nil {
		t.Fatal(err)
	}
	target2 := frontendtest.BlankDisk(t, t.TempDir(), 512<<20)
	err = frontend.Install(context.Background(), frontendtest.Answers(target2), frontendtest.TwoNICs(), md, slog.New(slog.DiscardHandler), nil)
	var se *frontend.StepError
	if !errors.As(err, &se) || se.Step.Name != "write configuration" || !strings.Contains(err.Error(), string(d)) {
		t.Fatalf("damaged medium: %v", err)
	}
}
