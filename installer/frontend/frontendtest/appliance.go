package frontendtest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"ironbark/images/appliance"
	"ironbark/installer/frontend"
	"ironbark/internal/filelock"
	"ironbark/internal/lab"
	"ironbark/roll"
	"ironbark/roll/builtin"
)

// securityMirror is the CLI's default: the tests share the base tree
// `ironbark appliance build` makes (the base's cache key names it).
const securityMirror = "http://deb.debian.org/debian-security"

// FrontendProfile is the built-in rolls' frontend appliance.
func FrontendProfile() (roll.Profile, error) {
	rs, err := roll.LoadEach(builtin.FS(), "builtin")
	if err != nil {
		return roll.Profile{}, err
	}
	g, err := roll.Merge(rs...)
	if err != nil {
		return roll.Profile{}, err
	}
	p, err := g.Profile("frontend", nil)
	if err != nil {
		return roll.Profile{}, err
	}
	return *p, nil
}

// FrontendImage is the real frontend appliance (Debian 12 from the
// built-in rolls, with ironbarkBin as /usr/sbin/ironbark), zstd-compressed
// as the ISO carries it. It is built once per set of inputs (the profile
// and the binary) and kept in lab.CacheDir()/frontend; the Debian base
// tree comes from the appliance cache `ironbark appliance build` uses.
func FrontendImage(t testing.TB, ironbarkBin string) string {
	t.Helper()
	lab.Require(t, "mmdebstrap", "unshare", "chroot", "grub-mkimage", "apt-get")
	p, err := FrontendProfile()
	if err != nil {
		t.Fatal(err)
	}
	bin, err := appliance.FileDigest(ironbarkBin)
	if err != nil {
		t.Fatal(err)
	}
	spec, _ := json.Marshal(struct {
		Profile  roll.Profile
		Ironbark string
		Mirror   string
		Security string
	}{p, bin, appliance.DefaultMirror, securityMirror})
	sum := sha256.Sum256(spec)
	key := hex.EncodeToString(sum[:12])
	dir := filepath.Join(lab.CacheDir(), "frontend")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, key+".img.zst")
	unlock, err := filelock.Lock(filepath.Join(dir, ".lock"))
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	if _, err := os.Stat(out); err == nil {
		t.Logf("frontend appliance %s (cached)", out)
		return out
	}

	// Older images (other binaries) go: one is kept per machine.
	old, _ := filepath.Glob(filepath.Join(dir, "*.img.zst"))
	for _, o := range old {
		os.Remove(o)
	}
	src := t.TempDir()
	if err := os.MkdirAll(filepath.Join(src, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(ironbarkBin, filepath.Join(src, "bin", "ironbark")); err != nil {
		copyFile(t, ironbarkBin, filepath.Join(src, "bin", "ironbark"))
	}
	raw := filepath.Join(src, "frontend.img")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	start := time.Now()
	res, err := appliance.Build(ctx, appliance.Config{Profile: p, CacheDir: filepath.Join(lab.CacheDir(), "appliance"),
		Output: raw, SourceDir: src, Security: securityMirror, Log: slog.New(slog.NewTextHandler(testWriter{t}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("frontend appliance built: %d bytes, base %s cached %v, %s", res.Size, res.BaseKey, res.BaseCached, time.Since(start).Round(time.Second))
	if err := (frontend.Image{Path: raw}).Compress(out + ".tmp"); err != nil {
		os.Remove(out + ".tmp")
		t.Fatal(err)
	}
	if err := os.Rename(out+".tmp", out); err != nil {
		t.Fatal(err)
	}
	return out
}

func copyFile(t testing.TB, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o755); err != nil {
		t.Fatal(err)
	}
}

// testWriter sends the build's log lines to the test log.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Logf("%s", b)
	return len(b), nil
}
