package rack

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"ironbark/internal/filelock"
)

// TestPruneCache: per kind the two most recently used entries stay, an
// older one a run holds stays, the rest go with their temporaries; other
// files (the admin's key, lock files) are never touched.
func TestPruneCache(t *testing.T) {
	dir := t.TempDir()
	put := func(name string, age time.Duration, use bool) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(name), 0o644); err != nil {
			t.Fatal(err)
		}
		at := time.Now().Add(-age)
		if use {
			if err := os.WriteFile(p+".use", nil, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chtimes(p+".use", at, at); err != nil {
				t.Fatal(err)
			}
			// Made long ago, used recently: use time counts.
			at = at.Add(-100 * time.Hour)
		}
		if err := os.Chtimes(p, at, at); err != nil {
			t.Fatal(err)
		}
		return p
	}
	const k1, k2, k3, k4 = "0123456789abcdef", "1111111111111111", "2222222222222222", "3333333333333333"
	put("compute-"+k1+".img", 4*time.Hour, false)
	put("compute-"+k2+".img", 3*time.Hour, true)
	put("compute-"+k3+".img", 1*time.Hour, false)
	put("compute-"+k4+".img", 2*time.Hour, true)
	put("compute-"+k1+".img.tmp", time.Hour, false)
	held := put("frontend-installed-"+k1+".qcow2", 9*time.Hour, true)
	put("frontend-installed-"+k2+".qcow2", 2*time.Hour, false)
	put("frontend-installed-"+k3+".qcow2", 1*time.Hour, false)
	put("ironbark-"+k1+".iso", 50*time.Hour, false)
	put("admin_ed25519", 500*time.Hour, false)
	put("compute-"+k1+".img.lock", 500*time.Hour, false)
	release, err := filelock.Shared(held + ".use")
	if err != nil {
		t.Fatal(err)
	}
	defer release()

	removed, err := pruneCache(dir, 2)
	if err != nil {
		t.Fatal(err)
	}
	for i := range removed {
		removed[i] = filepath.Base(removed[i])
	}
	slices.Sort(removed)
	if want := []string{"compute-" + k1 + ".img", "compute-" + k2 + ".img"}; !slices.Equal(removed, want) {
		t.Fatalf("removed %v, want %v", removed, want)
	}
	var left []string
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		left = append(left, e.Name())
	}
	for _, want := range []string{"compute-" + k3 + ".img", "compute-" + k4 + ".img", "frontend-installed-" + k1 + ".qcow2",
		"frontend-installed-" + k2 + ".qcow2", "frontend-installed-" + k3 + ".qcow2", "ironbark-" + k1 + ".iso", "admin_ed25519", "compute-" + k1 + ".img.lock"} {
		if !slices.Contains(left, want) {
			t.Errorf("%s was removed; left %v", want, left)
		}
	}
	if slices.Contains(left, "compute-"+k1+".img.tmp") {
		t.Errorf("a removed entry's temporary is left")
	}
}
