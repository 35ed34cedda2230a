package disk

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestSquashfs(t *testing.T) {
	requireTools(t, "unsquashfs")
	root := sampleTree(t)
	dir := t.TempDir()
	var sums []string
	for i, name := range []string{"a.sqfs", "b.sqfs"} {
		out := filepath.Join(dir, name)
		res, err := BuildFilesystem(t.Context(), out, FSSquashfs, DirSource(root), 0, FSOptions{KeepOwners: true})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Skipped) != 1 {
			t.Errorf("skipped %v, want the fifo", res.Skipped)
		}
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		sums = append(sums, string(b))
		if i == 0 {
			time.Sleep(1100 * time.Millisecond)
		}
	}
	if sums[0] != sums[1] {
		t.Error("two squashfs builds differ")
	}
	out, err := exec.Command("unsquashfs", "-lln", filepath.Join(dir, "a.sqfs")).CombinedOutput()
	if err != nil {
		t.Fatalf("unsquashfs: %v\n%s", err, out)
	}
	listing := string(out)
	t.Logf("unsquashfs -lln:\n%s", listing)
	for _, want := range []string{"etc/abs-link -> /etc/passwd", "-rw------- 0/42", "-rwsr-xr-x", "bin/tool-hardlink", "2024-05-01"} {
		if !strings.Contains(listing, want) {
			t.Errorf("listing lacks %q", want)
		}
	}
}
