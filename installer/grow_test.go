package installer_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"ironbark/images/disk"
	"ironbark/installer"
	"ironbark/internal/lab"
)

// TestGrowRoot lays a small GPT image (ESP + root) on a larger disk, as
// the installer does, and grows it: the root partition then ends where
// the disk's backup GPT begins, every partition keeps its place, GUID and
// name, the table verifies with sfdisk, and a second call changes nothing.
func TestGrowRoot(t *testing.T) {
	lab.Require(t, "sfdisk")
	dir := t.TempDir()
	tree := filepath.Join(dir, "tree")
	if err := os.MkdirAll(filepath.Join(tree, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tree, "etc", "hostname"), []byte("node\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, "disk.img")
	res, err := disk.BuildDisk(context.Background(), img, disk.DiskSpec{ESPSize: 8 << 20, Root: disk.DirSource(tree)})
	if err != nil {
		t.Fatal(err)
	}
	before := dump(t, img)
	if before["1"] == "" || before["2"] == "" {
		t.Fatalf("sfdisk shows no ESP and root: %v", before)
	}
	const diskSize = 1 << 30
	if err := os.Truncate(img, diskSize); err != nil {
		t.Fatal(err)
	}
	size, err := installer.GrowRoot(img)
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(diskSize - 33*512 - res.RootStart); size != want {
		t.Errorf("root grew to %d bytes, want %d (to the backup GPT)", size, want)
	}
	if out, err := exec.Command("sfdisk", "--verify", img).CombinedOutput(); err != nil || !strings.Contains(string(out), "No errors detected") {
		t.Fatalf("sfdisk --verify: %v\n%s", err, out)
	}
	after := dump(t, img)
	if before["label-id"] != after["label-id"] {
		t.Errorf("disk GUID changed: %q, then %q", before["label-id"], after["label-id"])
	}
	for _, p := range []string{"1", "2"} {
		b, a := before[p], after[p]
		if p == "2" { // the root: only its size changes
			b, a = withoutSize(b), withoutSize(a)
		}
		if b != a {
			t.Errorf("partition %s changed:\n%s\n%s", p, before[p], after[p])
		}
	}
	if n, err := installer.GrowRoot(img); err != nil || n != 0 {
		t.Errorf("second grow: %d, %v; want nothing to do", n, err)
	}
}

// dump is sfdisk --dump by line: "label-id" and the partitions by number.
func dump(t *testing.T, img string) map[string]string {
	t.Helper()
	out, err := exec.Command("sfdisk", "--dump", img).Output()
	if err != nil {
		t.Fatalf("sfdisk --dump: %v", err)
	}
	m := map[string]string{}
	for _, l := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(l, "label-id: "); ok {
			m["label-id"] = v
		}
		if k, v, ok := strings.Cut(l, " : "); ok && strings.HasPrefix(k, img) {
			m[strings.TrimPrefix(strings.TrimSpace(k), img)] = v
		}
	}
	return m
}

func withoutSize(s string) string {
	var keep []string
	for _, f := range strings.Split(s, ",") {
		if !strings.HasPrefix(strings.TrimSpace(f), "size=") {
			keep = append(keep, f)
		}
	}
	return strings.Join(keep, ",")
}
