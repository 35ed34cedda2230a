package appliance

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"ironbark/roll"
)

func TestApplyFiles(t *testing.T) {
	tree := t.TempDir()
	os.MkdirAll(filepath.Join(tree, "etc"), 0o755)
	os.WriteFile(filepath.Join(tree, "etc/passwd"), []byte("root:x:0:0::/root:/bin/sh\nlibvirt-qemu:x:64055:108::/var/lib/libvirt:/usr/sbin/nologin\n"), 0o644)
	os.WriteFile(filepath.Join(tree, "etc/group"), []byte("root:x:0:\nkvm:x:104:\nlibvirt:x:108:\n"), 0o644)
	os.WriteFile(filepath.Join(tree, "etc/issue"), []byte("Debian\n"), 0o600)
	// An absolute symlink in the tree must not send a file to the host.
	os.Symlink("/etc", filepath.Join(tree, "hostetc"))
	o := roll.Origin{Roll: "r", Node: "n", Pos: "nodes/n.xml:3"}
	files := []roll.File{
		{Path: "/etc/ironbark/node.conf", Mode: 0o640, Owner: "libvirt-qemu:kvm", Content: []byte("a=1\n"), Origin: o},
		{Path: "/etc/issue", Append: true, Content: []byte("ironbark\n"), Origin: o},
		{Path: "/usr/local/bin/tool", Mode: 0o4755, Content: []byte("#!/bin/sh\n"), Origin: o},
		{Path: "/etc/default-owner", Owner: "libvirt-qemu", Content: []byte("x"), Origin: o},
	}
	if err := applyFiles(tree, "", files); err != nil {
		t.Fatal(err)
	}
	check := func(p string, mode os.FileMode, uid, gid uint32, content string) {
		t.Helper()
		st, err := os.Lstat(filepath.Join(tree, p))
		if err != nil {
			t.Fatal(err)
		}
		sys := st.Sys().(*syscall.Stat_t)
		if st.Mode() != mode || sys.Uid != uid || sys.Gid != gid {
			t.Errorf("%s: mode %v uid %d gid %d, want %v %d %d", p, st.Mode(), sys.Uid, sys.Gid, mode, uid, gid)
		}
		if b, _ := os.ReadFile(filepath.Join(tree, p)); string(b) != content {
			t.Errorf("%s: %q, want %q", p, b, content)
		}
	}
	check("etc/ironbark/node.conf", 0o640, 64055, 104, "a=1\n")
	check("etc/issue", 0o600, 0, 0, "Debian\nironbark\n")
	check("usr/local/bin/tool", 0o755|os.ModeSetuid, 0, 0, "#!/bin/sh\n")
	check("etc/default-owner", 0o644, 64055, 108, "x")

	for name, f := range map[string]roll.File{
		"unknown user":    {Path: "/etc/x", Owner: "nobody-here", Origin: o},
		"unknown group":   {Path: "/etc/x", Owner: "root:nogroup-here", Origin: o},
		"through symlink": {Path: "/hostetc/ironbark-escape", Content: []byte("x"), Origin: o},
		"no source dir":   {Path: "/usr/bin/ironbark-node", Source: "bin/ironbark-node", Origin: o},
	} {
		err := applyFiles(tree, "", []roll.File{f})
		if err == nil || !strings.Contains(err.Error(), "nodes/n.xml:3") {
			t.Errorf("%s: err = %v, want an error naming the node file", name, err)
		}
	}
	if _, err := os.Stat("/etc/ironbark-escape"); err == nil {
		t.Fatal("a file escaped the tree through a symlink")
	}

	// <file src=> is read from the source directory.
	src := t.TempDir()
	os.MkdirAll(filepath.Join(src, "bin"), 0o755)
	os.WriteFile(filepath.Join(src, "bin/ironbark-node"), []byte("ELF"), 0o755)
	if err := applyFiles(tree, src, []roll.File{{Path: "/usr/bin/ironbark-node", Mode: 0o755, Source: "bin/ironbark-node", Origin: o}}); err != nil {
		t.Fatal(err)
	}
	check("usr/bin/ironbark-node", 0o755, 0, 0, "ELF")
}
