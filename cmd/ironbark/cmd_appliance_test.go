package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"ironbark/internal/lab"
	"ironbark/pxe"
)

// registeredImage is the digest the data dir's pxe says appliance installs.
func registeredImage(t *testing.T, dir, appliance string) string {
	t.Helper()
	e := &env{dataDir: dir}
	defer e.close()
	db, l, err := e.openPXE(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	blobs, err := l.Blobs()
	if err != nil {
		t.Fatal(err)
	}
	d, _, err := (&pxe.BlobImages{DB: db, Blobs: blobs}).Image(context.Background(), appliance)
	if err != nil {
		return ""
	}
	return string(d)
}

// TestApplianceBuild: `appliance build` walks the lab roll, builds its
// image and registers it; a build that fails (a post script) leaves the
// registered image alone.
func TestApplianceBuild(t *testing.T) {
	lab.Require(t, "unshare", "chroot", "grub-mkimage")
	k := lab.GuestKernel(t)
	dir := t.TempDir()
	labRoll := filepath.Join("..", "..", "images", "appliance", "labroll")
	args := []string{"appliance", "build", "lab", "--roll", labRoll, "--kernel", k.Root, "--data-dir", dir, "--cache", filepath.Join(dir, "cache")}
	out, errs, code := ironbark(t, args...)
	if code != 0 {
		t.Fatalf("exit %d: %s%s", code, out, errs)
	}
	digest := strings.TrimSpace(out)
	if !strings.HasPrefix(digest, "sha256:") || !strings.Contains(errs, "appliance lab installs "+digest) {
		t.Fatalf("stdout %q stderr %q", out, errs)
	}
	if got := registeredImage(t, dir, "lab"); got != digest {
		t.Fatalf("registered %q, built %q", got, digest)
	}

	// A site roll whose post script fails: exit 1 with the script's
	// output and node file; the lab still installs the first image.
	site := t.TempDir()
	os.MkdirAll(filepath.Join(site, "nodes"), 0o755)
	os.MkdirAll(filepath.Join(site, "graphs", "default"), 0o755)
	os.WriteFile(filepath.Join(site, "roll.xml"), []byte(`<roll name="site" version="1" arch="x86_64" os="any" summary="site"/>`), 0o644)
	os.WriteFile(filepath.Join(site, "nodes", "broken.xml"), []byte("<kickstart>\n<post>\necho site script output; exit 7\n</post>\n</kickstart>\n"), 0o644)
	os.WriteFile(filepath.Join(site, "graphs", "default", "site.xml"), []byte(`<graph><edge from="lab" to="broken"/></graph>`), 0o644)
	out, errs, code = ironbark(t, append(args, "--roll", site)...)
	if code != 1 {
		t.Fatalf("exit %d, want 1: %s%s", code, out, errs)
	}
	for _, want := range []string{"site script output", "node broken", "roll site", "nodes/broken.xml", "exit status 7"} {
		if !strings.Contains(errs, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errs)
		}
	}
	if got := registeredImage(t, dir, "lab"); got != digest {
		t.Errorf("after a failed build lab installs %q, want still %q", got, digest)
	}

	// Usage errors exit 2.
	if _, errs, code := ironbark(t, "appliance", "build", "lab", "--no-register", "--data-dir", dir); code != 2 || !strings.Contains(errs, "--out") {
		t.Errorf("--no-register without --out: exit %d %s", code, errs)
	}
}
