package installer_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"ironbark/images/disk"
	"ironbark/installer"
	"ironbark/internal/lab"
)

// edKey is an ed25519 authorized_keys line whose key bytes are all b.
func edKey(b byte, comment string) string {
	blob := binary.BigEndian.AppendUint32(nil, 11)
	blob = append(blob, "ssh-ed25519"...)
	blob = binary.BigEndian.AppendUint32(blob, 32)
	blob = append(blob, bytes.Repeat([]byte{b}, 32)...)
	return "ssh-ed25519 " + base64.StdEncoding.EncodeToString(blob) + " " + comment
}

// rootImage builds a GPT disk (ESP + ext4 root) from a tree with /etc
// and the given files, as images/disk builds an appliance's.
func rootImage(t *testing.T, files map[string]string) (string, *disk.DiskResult) {
	t.Helper()
	dir := t.TempDir()
	tree := filepath.Join(dir, "tree")
	files["etc/hostname"] = "node\n"
	for p, c := range files {
		full := filepath.Join(tree, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	img := filepath.Join(dir, "disk.img")
	res, err := disk.BuildDisk(context.Background(), img, disk.DiskSpec{ESPSize: 8 << 20, Root: disk.DirSource(tree)})
	if err != nil {
		t.Fatal(err)
	}
	return img, res
}

// rootPart copies the disk's root filesystem out for e2fsprogs.
func rootPart(t *testing.T, img string, res *disk.DiskResult) string {
	t.Helper()
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := filepath.Join(t.TempDir(), "root.ext4")
	o, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	if _, err := io.Copy(o, io.NewSectionReader(f, res.RootStart, res.Root.Size)); err != nil {
		t.Fatal(err)
	}
	return out
}

// checkRoot runs e2fsck -fn on the root filesystem and returns root's
// authorized_keys and the modes and owners of it and its directory, as
// debugfs reads them.
func checkRoot(t *testing.T, img string, res *disk.DiskResult) (keys, fileStat, dirStat string) {
	t.Helper()
	fsImg := rootPart(t, img, res)
	if out, err := exec.Command("e2fsck", "-fn", fsImg).CombinedOutput(); err != nil {
		t.Fatalf("e2fsck -fn after the write: %v\n%s", err, out)
	}
	debugfs := func(req string) string {
		out, err := exec.Command("debugfs", "-R", req, fsImg).Output()
		if err != nil {
			t.Fatalf("debugfs %s: %v", req, err)
		}
		return string(out)
	}
	modeRE := regexp.MustCompile(`Mode:\s+(\d+)`)
	userRE := regexp.MustCompile(`User:\s+(\d+)\s+Group:\s+(\d+)`)
	stat := func(p string) string {
		s := debugfs("stat " + p)
		m, u := modeRE.FindStringSubmatch(s), userRE.FindStringSubmatch(s)
		if m == nil || u == nil {
			t.Fatalf("debugfs stat %s:\n%s", p, s)
		}
		return fmt.Sprintf("%s %s:%s", m[1], u[1], u[2])
	}
	return debugfs("cat /root/.ssh/authorized_keys"), stat("/root/.ssh/authorized_keys"), stat("/root/.ssh")
}

// TestWriteAuthorizedKeys: the installer merges the profile's keys into
// an installed root that already has keys (a file bigger than a block, so
// the merge extends it into a new one): the image's lines stay as they
// were, each new key comes once, the file is 0600 and its directory 0700,
// both root's, and e2fsck finds the filesystem clean. A second install
// with the same keys adds nothing.
func TestWriteAuthorizedKeys(t *testing.T) {
	lab.Require(t, "e2fsck", "debugfs")
	var baked strings.Builder
	baked.WriteString("# baked into the image\n")
	for i := range 9 {
		baked.WriteString(edKey(byte(i+1), fmt.Sprintf("baked-%d@image", i)) + "\n")
	}
	img, res := rootImage(t, map[string]string{"root/.ssh/authorized_keys": strings.TrimSuffix(baked.String(), "\n")})
	admin, ops := edKey(0xa0, "admin@frontend"), edKey(0xb0, "ops@laptop")
	profile := admin + "\n" + edKey(3, "baked-2-again") + "\n" + ops + "\n" + admin + "\n"
	n, err := installer.WriteAuthorizedKeys(img, profile)
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Errorf("added %d keys, want 2 (admin and ops; the third is the image's)", n)
	}
	want := baked.String() + admin + "\n" + ops + "\n"
	keys, fst, dst := checkRoot(t, img, res)
	if keys != want {
		t.Fatalf("authorized_keys:\n%s\nwant:\n%s", keys, want)
	}
	if fst != "0600 0:0" || dst != "0700 0:0" {
		t.Errorf("authorized_keys %s, /root/.ssh %s; want 0600 0:0 and 0700 0:0", fst, dst)
	}
	if n, err := installer.WriteAuthorizedKeys(img, ops+"\n"+admin); err != nil || n != 0 {
		t.Fatalf("again: %d, %v; want nothing added", n, err)
	}
	if keys, _, _ := checkRoot(t, img, res); keys != want {
		t.Fatalf("after a second write:\n%s", keys)
	}
}

// TestWriteAuthorizedKeysNewFile: an image with no /root at all gets
// /root/.ssh (0700) and the keys (0600).
func TestWriteAuthorizedKeysNewFile(t *testing.T) {
	lab.Require(t, "e2fsck", "debugfs")
	img, res := rootImage(t, map[string]string{"etc/motd": "hello\n"})
	admin := edKey(0xa0, "admin@frontend")
	if n, err := installer.WriteAuthorizedKeys(img, admin); err != nil || n != 1 {
		t.Fatalf("WriteAuthorizedKeys: %d, %v", n, err)
	}
	keys, fst, dst := checkRoot(t, img, res)
	if keys != admin+"\n" || fst != "0600 0:0" || dst != "0700 0:0" {
		t.Fatalf("authorized_keys %q (%s), /root/.ssh %s", keys, fst, dst)
	}
}

// TestWriteAuthorizedKeysRefuses: keys that do not parse leave the disk
// byte for byte as it was, and a disk with no ext4 root (a FAT-only
// custom image, or an ext4 partition without /etc) says so.
func TestWriteAuthorizedKeysRefuses(t *testing.T) {
	img, _ := rootImage(t, map[string]string{"root/.ssh/authorized_keys": edKey(1, "baked") + "\n"})
	sum := func() [32]byte {
		b, err := os.ReadFile(img)
		if err != nil {
			t.Fatal(err)
		}
		return sha256.Sum256(b)
	}
	before := sum()
	_, err := installer.WriteAuthorizedKeys(img, edKey(0xa0, "admin")+"\nssh-ed25519 AAAA+cut-short\n")
	if err == nil || !strings.Contains(err.Error(), "line 2:") {
		t.Fatalf("bad keys: %v, want an error naming line 2", err)
	}
	if sum() != before {
		t.Fatal("a refused write changed the disk")
	}

	dir := t.TempDir()
	tree := filepath.Join(dir, "tree")
	if err := os.MkdirAll(filepath.Join(tree, "srv"), 0o755); err != nil {
		t.Fatal(err)
	}
	noEtc := filepath.Join(dir, "data.img")
	if _, err := disk.BuildDisk(context.Background(), noEtc, disk.DiskSpec{ESPSize: 8 << 20, Root: disk.DirSource(tree)}); err != nil {
		t.Fatal(err)
	}
	if _, err := installer.WriteAuthorizedKeys(noEtc, edKey(0xa0, "admin")); !errors.Is(err, installer.ErrNoRootFS) {
		t.Fatalf("a disk without a root filesystem: %v, want ErrNoRootFS", err)
	}
}

// TestWriteAuthorizedKeysMkfs: a custom image made with mke2fs (its
// defaults: metadata_csum, dir_index) takes the keys too, and stays
// clean.
func TestWriteAuthorizedKeysMkfs(t *testing.T) {
	lab.Require(t, "sfdisk", "mkfs.ext4", "e2fsck", "debugfs")
	dir := t.TempDir()
	tree := filepath.Join(dir, "tree")
	for _, d := range []string{"etc", "root/.ssh"} {
		if err := os.MkdirAll(filepath.Join(tree, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	baked := edKey(1, "baked@mkfs") + "\n"
	if err := os.WriteFile(filepath.Join(tree, "root/.ssh/authorized_keys"), []byte(baked), 0o600); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, "custom.img")
	const start, size = 2048 * 512, 48 << 20
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 64<<20); err != nil {
		t.Fatal(err)
	}
	sf := exec.Command("sfdisk", "-q", img)
	sf.Stdin = strings.NewReader(fmt.Sprintf("label: gpt\nstart=2048, size=%d, type=L\n", size/512))
	if out, err := sf.CombinedOutput(); err != nil {
		t.Fatalf("sfdisk: %v\n%s", err, out)
	}
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-E", fmt.Sprintf("offset=%d", start), "-d", tree, img, "48M").CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v\n%s", err, out)
	}
	admin := edKey(0xa0, "admin@frontend")
	if n, err := installer.WriteAuthorizedKeys(img, admin); err != nil || n != 1 {
		t.Fatalf("WriteAuthorizedKeys: %d, %v", n, err)
	}
	keys, fst, dst := checkRoot(t, img, &disk.DiskResult{RootStart: start, Root: &disk.Result{Size: size}})
	if keys != baked+admin+"\n" || fst != "0600 0:0" || dst != "0700 0:0" {
		t.Fatalf("authorized_keys %q (%s), /root/.ssh %s", keys, fst, dst)
	}
}
