package initramfs_test

import (
	"bytes"
	"crypto/sha256"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	. "ironbark/images/initramfs"
	"ironbark/internal/lab"
)

// fakeModules writes a small modules dir: c needs b needs a.
func fakeModules(t *testing.T) string {
	dir := filepath.Join(t.TempDir(), "6.1.0-test")
	for _, m := range []string{"kernel/a.ko", "kernel/sub/b-mod.ko", "kernel/c.ko", "kernel/other.ko"} {
		p := filepath.Join(dir, m)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("module "+m), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	dep := "kernel/a.ko:\nkernel/sub/b-mod.ko: kernel/a.ko\nkernel/c.ko: kernel/sub/b-mod.ko kernel/a.ko\nkernel/other.ko:\n"
	if err := os.WriteFile(filepath.Join(dir, "modules.dep"), []byte(dep), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "modules.builtin"), []byte("kernel/fs/ext4/ext4.ko\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestResolveOrder(t *testing.T) {
	dir := fakeModules(t)
	mods, err := ResolveModules(dir, []string{"c", "b_mod", "ext4"})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range mods {
		names = append(names, m.Name)
	}
	if got, want := strings.Join(names, " "), "a b_mod c"; got != want {
		t.Fatalf("load order %q, want %q", got, want)
	}
	if _, err := ResolveModules(dir, []string{"nosuch"}); err == nil || !strings.Contains(err.Error(), "nosuch") {
		t.Fatalf("unknown module: err = %v", err)
	}
}

func sampleSpec(t *testing.T, comp Compression) Spec {
	tree := t.TempDir()
	os.MkdirAll(filepath.Join(tree, "etc"), 0o755)
	os.WriteFile(filepath.Join(tree, "etc", "hostname"), []byte("node\n"), 0o644)
	os.Symlink("hostname", filepath.Join(tree, "etc", "name"))
	return Spec{
		Files: []File{
			{Path: "/init", Mode: 0o755, Data: []byte("#!/bin/sh\necho hi\n")},
			Symlink("bin/sh", "busybox"),
			CharDevice("dev/null", 1, 3, 0o666),
			{Path: "dev/sda", Mode: fs.ModeDevice | 0o660, Major: 8, Minor: 0},
			{Path: "sbin/tool", Mode: 0o4755, UID: 0, GID: 0, Data: []byte("x")},
		},
		Trees:       []Tree{{Source: tree, Dest: "/"}},
		Modules:     []string{"c"},
		ModulesDir:  fakeModules(t),
		Compression: comp,
	}
}

func decompress(t *testing.T, b []byte, comp Compression) []byte {
	t.Helper()
	switch comp {
	case Gzip:
		r, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		if _, err := out.ReadFrom(r); err != nil {
			t.Fatal(err)
		}
		return out.Bytes()
	case Zstd:
		d, err := zstd.NewReader(nil)
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		out, err := d.DecodeAll(b, nil)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	return b
}

// TestGNUCpioReadsIt checks the archive with the real cpio tool.
func TestGNUCpioReadsIt(t *testing.T) {
	if _, err := exec.LookPath("cpio"); err != nil {
		lab.Missing(t, "cpio not installed (apt-get install cpio)")
	}
	for _, comp := range []Compression{None, Gzip, Zstd} {
		t.Run(string(comp), func(t *testing.T) {
			var buf bytes.Buffer
			res, err := Build(&buf, sampleSpec(t, comp))
			if err != nil {
				t.Fatal(err)
			}
			raw := decompress(t, buf.Bytes(), comp)
			cmd := exec.Command("cpio", "-itv", "--quiet")
			cmd.Stdin = bytes.NewReader(raw)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("cpio -itv: %v\n%s", err, out)
			}
			listing := string(out)
			for _, want := range []string{
				"-rwxr-xr-x   1 root     root           18 Jan  1  1970 init",
				"lrwxrwxrwx   1 root     root            7 Jan  1  1970 bin/sh -> busybox",
				"crw-rw-rw-   1 root     root       1,   3 Jan  1  1970 dev/null",
				"brw-rw----   1 root     root       8,   0 Jan  1  1970 dev/sda",
				"crw-------   1 root     root       5,   1 Jan  1  1970 dev/console",
				"-rwsr-xr-x", "etc/name -> hostname",
				"lib/modules/6.1.0-test/kernel/a.ko",
				"lib/modules/6.1.0-test/modules.dep",
			} {
				if !strings.Contains(listing, want) {
					t.Errorf("listing lacks %q:\n%s", want, listing)
				}
			}
			if got := strings.Join(res.LoadOrder, " "); got != "lib/modules/6.1.0-test/kernel/a.ko lib/modules/6.1.0-test/kernel/sub/b-mod.ko lib/modules/6.1.0-test/kernel/c.ko" {
				t.Errorf("LoadOrder = %s", got)
			}
			// Extract a file and compare its bytes.
			dst := t.TempDir()
			cmd = exec.Command("cpio", "-i", "--quiet", "-d", "etc/hostname", "lib/modules/6.1.0-test/modules.load-order")
			cmd.Dir = dst
			cmd.Stdin = bytes.NewReader(raw)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("cpio -i: %v\n%s", err, out)
			}
			if b, _ := os.ReadFile(filepath.Join(dst, "etc/hostname")); string(b) != "node\n" {
				t.Errorf("etc/hostname = %q", b)
			}
			if b, _ := os.ReadFile(filepath.Join(dst, "lib/modules/6.1.0-test/modules.load-order")); !strings.HasPrefix(string(b), "/lib/modules/6.1.0-test/kernel/a.ko\n") {
				t.Errorf("load order file = %q", b)
			}
		})
	}
}

func TestReproducible(t *testing.T) {
	for _, comp := range []Compression{Gzip, Zstd} {
		spec := sampleSpec(t, comp)
		var a, b bytes.Buffer
		if _, err := Build(&a, spec); err != nil {
			t.Fatal(err)
		}
		if _, err := Build(&b, spec); err != nil {
			t.Fatal(err)
		}
		if sha256.Sum256(a.Bytes()) != sha256.Sum256(b.Bytes()) {
			t.Fatalf("%s: two builds differ", comp)
		}
	}
}

func TestBadInput(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing")
	for name, spec := range map[string]Spec{
		"dotdot":        {Files: []File{{Path: "../etc/passwd", Data: []byte("x")}}},
		"twice":         {Files: []File{{Path: "a", Data: nil}, {Path: "/a", Data: nil}}},
		"parent file":   {Files: []File{{Path: "a", Data: nil}, {Path: "a/b", Data: nil}}},
		"no source":     {Files: []File{{Path: "a", Source: missing}}},
		"no tree":       {Trees: []Tree{{Source: missing}}},
		"no modulesdir": {Modules: []string{"virtio_net"}},
		"bad module":    {Modules: []string{"nosuch"}, ModulesDir: fakeModules(t)},
		"empty symlink": {Files: []File{{Path: "l", Mode: fs.ModeSymlink}}},
	} {
		if _, err := Build(&bytes.Buffer{}, spec); err == nil {
			t.Errorf("%s: Build succeeded", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
}
