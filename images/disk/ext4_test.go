package disk

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"ironbark/internal/lab"
)

// sampleTree makes a small rootfs: dirs, files with modes and owners, a
// symlink (absolute, pointing at a host path), a hard link, a FIFO.
func sampleTree(t testing.TB) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "root")
	mt := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{"etc", "bin", "var/lib/empty", "sbin"} {
		must(os.MkdirAll(filepath.Join(root, d), 0o755))
	}
	must(os.WriteFile(filepath.Join(root, "etc/hostname"), []byte("node-0\n"), 0o644))
	must(os.WriteFile(filepath.Join(root, "etc/shadow"), []byte("root:*:1::::::\n"), 0o600))
	must(os.WriteFile(filepath.Join(root, "bin/tool"), bytes.Repeat([]byte("ironbark"), 100_000), 0o755))
	must(os.WriteFile(filepath.Join(root, "sbin/suid"), []byte("x"), 0o755))
	must(os.Chmod(filepath.Join(root, "sbin/suid"), 0o4755|os.ModeSetuid))
	must(os.Lchown(filepath.Join(root, "etc/shadow"), 0, 42))
	must(os.Symlink("/etc/passwd", filepath.Join(root, "etc/abs-link")))
	must(os.Symlink("hostname", filepath.Join(root, "etc/rel-link")))
	must(os.Link(filepath.Join(root, "bin/tool"), filepath.Join(root, "bin/tool-hardlink")))
	must(syscall.Mkfifo(filepath.Join(root, "var/fifo"), 0o644))
	filepath.Walk(root, func(p string, info os.FileInfo, err error) error {
		if info.Mode()&os.ModeSymlink == 0 {
			os.Chtimes(p, mt, mt)
		}
		return nil
	})
	return root
}

func requireTools(t *testing.T, tools ...string) {
	t.Helper()
	for _, c := range tools {
		if _, err := exec.LookPath(c); err != nil {
			lab.Missing(t, c+" not installed (make deps)")
		}
	}
}

func fsck(t *testing.T, img string) {
	t.Helper()
	out, err := exec.Command("e2fsck", "-fn", img).CombinedOutput()
	if err != nil {
		t.Fatalf("e2fsck -fn: %v\n%s", err, out)
	}
}

func debugfs(t *testing.T, img, req string) string {
	t.Helper()
	out, err := exec.Command("debugfs", "-R", req, img).CombinedOutput()
	if err != nil {
		t.Fatalf("debugfs %s: %v\n%s", req, err, out)
	}
	return string(out)
}

func buildExt4(t *testing.T, src Source, size int64, o FSOptions) (string, *Result) {
	t.Helper()
	img := filepath.Join(t.TempDir(), "fs.img")
	res, err := BuildFilesystem(context.Background(), img, FSExt4, src, size, o)
	if err != nil {
		t.Fatal(err)
	}
	return img, res
}

func TestExt4FromDir(t *testing.T) {
	requireTools(t, "e2fsck", "debugfs")
	root := sampleTree(t)
	img, res := buildExt4(t, DirSource(root), 0, FSOptions{Label: "rootfs", KeepOwners: true})
	fsck(t, img)
	if res.HardLinksCopied != 0 || len(res.Skipped) != 1 || res.Skipped[0] != "var/fifo" {
		t.Errorf("result: %+v", res)
	}
	if got := debugfs(t, img, "cat /etc/hostname"); !strings.Contains(got, "node-0") {
		t.Errorf("cat hostname: %q", got)
	}
	stat := debugfs(t, img, "stat /etc/shadow")
	if !strings.Contains(stat, "Mode:  0600") || !strings.Contains(stat, "Group:    42") {
		t.Errorf("stat shadow:\n%s", stat)
	}
	if s := debugfs(t, img, "stat /sbin/suid"); !strings.Contains(s, "Mode:  04755") {
		t.Errorf("suid lost:\n%s", s)
	}
	if s := debugfs(t, img, "stat /etc/abs-link"); !strings.Contains(s, `Fast link dest: "/etc/passwd"`) {
		t.Errorf("symlink:\n%s", s)
	}
	if s := debugfs(t, img, "stat /bin/tool"); !strings.Contains(s, "mtime: 0x66322ec0") || !strings.Contains(s, "Size: 800000") {
		t.Errorf("tool:\n%s", s)
	}
	if s := debugfs(t, img, "stat /bin/tool-hardlink"); !strings.Contains(s, "Size: 800000") {
		t.Errorf("hard link copy:\n%s", s)
	}
}

func TestExt4Reproducible(t *testing.T) {
	requireTools(t, "e2fsck")
	root := sampleTree(t)
	var sums []string
	for i := 0; i < 2; i++ {
		img, _ := buildExt4(t, DirSource(root), 0, FSOptions{Label: "rootfs", Seed: "test"})
		b, err := os.ReadFile(img)
		if err != nil {
			t.Fatal(err)
		}
		sums = append(sums, fmt.Sprintf("%x", sha256.Sum256(b)))
		fsck(t, img)
		if i == 0 {
			time.Sleep(1100 * time.Millisecond) // a second passes: time.Now must not leak into the image
		}
	}
	if sums[0] != sums[1] {
		t.Fatalf("two builds differ: %s vs %s", sums[0], sums[1])
	}
	img, _ := buildExt4(t, DirSource(root), 0, FSOptions{Label: "rootfs", Seed: "other"})
	b, _ := os.ReadFile(img)
	if fmt.Sprintf("%x", sha256.Sum256(b)) == sums[0] {
		t.Fatal("another seed gave the same image")
	}
}

func tarOf(t *testing.T, entries []tar.Header, content map[string]string) string {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range entries {
		h := h
		if c, ok := content[h.Name]; ok {
			h.Size = int64(len(c))
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if c, ok := content[h.Name]; ok {
			io.WriteString(tw, c)
		}
	}
	tw.Close()
	p := filepath.Join(t.TempDir(), "src.tar")
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestExt4FromTar(t *testing.T) {
	requireTools(t, "e2fsck", "debugfs")
	mt := time.Unix(1700000000, 0)
	p := tarOf(t, []tar.Header{
		{Name: "./", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: mt},
		{Name: "./etc/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: mt},
		{Name: "./etc/motd", Typeflag: tar.TypeReg, Mode: 0o644, Uid: 1000, Gid: 1000, ModTime: mt},
		{Name: "./etc/motd.hard", Typeflag: tar.TypeLink, Linkname: "./etc/motd", ModTime: mt},
		{Name: "./etc/localtime", Typeflag: tar.TypeSymlink, Linkname: "/usr/share/zoneinfo/UTC", ModTime: mt},
		{Name: "./dev/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: mt},
		{Name: "./dev/null", Typeflag: tar.TypeChar, Mode: 0o666, Devmajor: 1, Devminor: 3, ModTime: mt},
	}, map[string]string{"./etc/motd": "welcome\n"})
	img, res := buildExt4(t, TarFile(p), 0, FSOptions{KeepOwners: true})
	fsck(t, img)
	if res.HardLinksCopied != 1 || len(res.Skipped) != 1 {
		t.Errorf("result %+v", res)
	}
	if s := debugfs(t, img, "cat /etc/motd.hard"); !strings.Contains(s, "welcome") {
		t.Errorf("hard link content %q", s)
	}
	if s := debugfs(t, img, "stat /etc/motd"); !strings.Contains(s, "User:  1000") {
		t.Errorf("owner:\n%s", s)
	}
}

func TestBadSources(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "big")
	os.MkdirAll(big, 0o755)
	f, _ := os.Create(filepath.Join(big, "blob"))
	f.Truncate(100 << 20)
	f.Close()
	escape := tarOf(t, []tar.Header{{Name: "../../etc/cron.d/evil", Typeflag: tar.TypeReg, Mode: 0o644}}, map[string]string{"../../etc/cron.d/evil": "x"})
	viaLink := tarOf(t, []tar.Header{
		{Name: "etc", Typeflag: tar.TypeSymlink, Linkname: "/etc"},
		{Name: "etc/passwd", Typeflag: tar.TypeReg, Mode: 0o644},
	}, map[string]string{"etc/passwd": "x"})
	badLink := tarOf(t, []tar.Header{{Name: "a", Typeflag: tar.TypeLink, Linkname: "../../etc/shadow"}}, nil)
	trunc := filepath.Join(dir, "trunc.tar")
	b, _ := os.ReadFile(tarOf(t, []tar.Header{{Name: "f", Typeflag: tar.TypeReg, Mode: 0o644}}, map[string]string{"f": strings.Repeat("y", 5000)}))
	os.WriteFile(trunc, b[:2000], 0o644)

	for name, tc := range map[string]struct {
		src  Source
		size int64
		want string
	}{
		"too big":        {DirSource(big), 64 << 20, "larger than the image"},
		"dotdot":         {TarFile(escape), 0, "escapes the tree"},
		"through link":   {TarFile(viaLink), 0, "through symlink"},
		"hardlink out":   {TarFile(badLink), 0, "escapes the tree"},
		"truncated tar":  {TarFile(trunc), 0, "unexpected EOF"},
		"missing source": {DirSource(filepath.Join(dir, "nope")), 0, "no such file"},
	} {
		t.Run(name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out.img")
			_, err := BuildFilesystem(context.Background(), out, FSExt4, tc.src, tc.size, FSOptions{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			if tc.want == "larger than the image" && !errors.Is(err, ErrTooSmall) {
				t.Errorf("not ErrTooSmall: %v", err)
			}
			ents, _ := os.ReadDir(filepath.Dir(out))
			if len(ents) != 0 {
				t.Fatalf("left behind: %v", ents)
			}
		})
	}
}

// TestExt4LastGroup: a filesystem whose last block group would be a
// sliver (1025 MiB: 8 groups of 128 MiB and 1 MiB, which starts a flex
// group its inode tables do not fit in) is written without it, and fsck
// finds it clean; computed sizes fill such a group instead.
func TestExt4LastGroup(t *testing.T) {
	requireTools(t, "e2fsck")
	img, res := buildExt4(t, DirSource(sampleTree(t)), 1025<<20, FSOptions{})
	fsck(t, img)
	if res.Size != 1024<<20 {
		t.Errorf("size %d MiB, want the sliver dropped: 1024", res.Size>>20)
	}
	for _, tc := range []struct {
		size, down, up int64
	}{
		{1025 << 20, 1024 << 20, 1040 << 20},
		{1040 << 20, 1040 << 20, 1040 << 20},
		{1024 << 20, 1024 << 20, 1024 << 20},
		{100 << 20, 100 << 20, 100 << 20},
	} {
		if got := ext4Round(tc.size, false); got != tc.down {
			t.Errorf("ext4Round(%d MiB, down) = %d MiB, want %d", tc.size>>20, got>>20, tc.down>>20)
		}
		if got := ext4Round(tc.size, true); got != tc.up {
			t.Errorf("ext4Round(%d MiB, up) = %d MiB, want %d", tc.size>>20, got>>20, tc.up>>20)
		}
	}
}
