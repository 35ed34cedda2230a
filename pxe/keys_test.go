package pxe

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"ironbark/images/disk"
	"ironbark/internal/lab"
	"ironbark/internal/store/storetest"
	"ironbark/pxe/bootapi"
	"ironbark/roll"
)

const (
	adminKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f admin@frontend"
	opsKey   = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB8eHRwbGhkYFxYVFBMSERAPDg0MCwoJCAcGBQQDAgEA ops@laptop"
)

// TestProfileCarriesKeys: the install profile carries the host's
// ssh_authorized_keys as the frontend resolves it at that install (a
// change between two installs reaches the second; a host's own value wins
// over the global one), and a value that does not parse fails the profile
// before the attempt's one-time token is issued, so the install goes
// through once the attribute is fixed.
func TestProfileCarriesKeys(t *testing.T) {
	db := storetest.SQLite(t, append(Migrations(), roll.Migrations()...))
	ctx := context.Background()
	e := newBootEnv(t, db, nil)
	reg, _ := e.tokenIdentity(t, db)
	attrs := roll.NewAttrs(db)
	e.boot.Keys = AttrKeys{Attrs: attrs}
	const mac, ip = "52:54:00:00:30:01", "127.1.0.9"
	if _, err := e.hosts.Add(ctx, AddHost{MAC: mac, IP: ip, Appliance: "compute", Rank: -1, Cluster: "c1"}); err != nil {
		t.Fatal(err)
	}
	profile := func() (int, bootapi.Profile, string) {
		t.Helper()
		attempt := attemptRE.FindStringSubmatch(e.bootScript(t, mac))[1]
		code, b := getFrom(t, ip, e.srv.URL+bootapi.PathInstall+"compute-0-0/profile?attempt="+attempt)
		var p bootapi.Profile
		if code == http.StatusOK {
			if err := json.Unmarshal(b, &p); err != nil {
				t.Fatal(err)
			}
		}
		return code, p, string(b)
	}

	if code, p, b := profile(); code != 200 || p.AuthorizedKeys != "" {
		t.Fatalf("no attribute: %d %q %s, want no keys", code, p.AuthorizedKeys, b)
	}
	if err := attrs.Set(ctx, roll.ScopeGlobal, "", roll.SSHKeysAttr, adminKey); err != nil {
		t.Fatal(err)
	}
	if code, p, b := profile(); code != 200 || p.AuthorizedKeys != adminKey {
		t.Fatalf("global keys: %d %q %s", code, p.AuthorizedKeys, b)
	}
	if err := attrs.Set(ctx, roll.ScopeHost, "compute-0-0", roll.SSHKeysAttr, adminKey+"\n"+opsKey); err != nil {
		t.Fatal(err)
	}
	if code, p, b := profile(); code != 200 || p.AuthorizedKeys != adminKey+"\n"+opsKey {
		t.Fatalf("the host's keys: %d %q %s", code, p.AuthorizedKeys, b)
	}

	// A bad value stored behind `attr set`'s back (an older frontend did
	// not check): the profile names it, and no token was minted.
	if _, err := db.Exec(ctx, `UPDATE roll_attributes SET value = ? WHERE scope = 'host' AND name = ?`,
		adminKey+"\nssh-ed25519 truncated", roll.SSHKeysAttr); err != nil {
		t.Fatal(err)
	}
	attempt := attemptRE.FindStringSubmatch(e.bootScript(t, mac))[1]
	url := e.srv.URL + bootapi.PathInstall + "compute-0-0/profile?attempt=" + attempt
	code, b := getFrom(t, ip, url)
	if code != http.StatusInternalServerError || !strings.Contains(string(b), "ssh_authorized_keys: line 2:") {
		t.Fatalf("bad keys: %d %s, want 500 naming the attribute and line", code, b)
	}
	if n, _ := reg.TokenCount(ctx, time.Now()); n != 0 {
		t.Fatalf("%d tokens after a refused profile, want 0", n)
	}
	if err := attrs.Set(ctx, roll.ScopeHost, "compute-0-0", roll.SSHKeysAttr, opsKey); err != nil {
		t.Fatal(err)
	}
	// The installer's retry of the same attempt now gets its profile.
	code, b = getFrom(t, ip, url)
	var p bootapi.Profile
	if code != 200 || json.Unmarshal(b, &p) != nil || p.AuthorizedKeys != opsKey || p.Identity.EnrollmentToken == "" {
		t.Fatalf("after the fix: %d %s", code, b)
	}
}

// TestInstallWritesRootKeys runs the real installer against the boot
// server on loopback with an appliance image that has an ext4 root and
// no keys: after the install, root's authorized_keys on the disk holds
// the host's ssh_authorized_keys, 0600 in a 0700 directory.
func TestInstallWritesRootKeys(t *testing.T) {
	lab.Require(t, "debugfs")
	db := storetest.SQLite(t, append(Migrations(), roll.Migrations()...))
	ctx := context.Background()
	e := newBootEnv(t, db, nil)
	tree := filepath.Join(t.TempDir(), "tree")
	if err := os.MkdirAll(filepath.Join(tree, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(t.TempDir(), "compute.img")
	res, err := disk.BuildDisk(ctx, img, disk.DiskSpec{ESPSize: 40 << 20, Root: disk.DirSource(tree)})
	if err != nil {
		t.Fatal(err)
	}
	// The ESP, where the identity goes, as an appliance has it.
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := disk.WriteFAT32(f, res.ESPStart, 40<<20, "ESP", nil); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if _, _, err := e.boot.Images.(*BlobImages).Set(ctx, "compute", img); err != nil {
		t.Fatal(err)
	}
	attrs := roll.NewAttrs(db)
	e.boot.Keys = AttrKeys{Attrs: attrs}
	if err := attrs.Set(ctx, roll.ScopeGlobal, "", roll.SSHKeysAttr, adminKey+"\n"+opsKey+"\n"); err != nil {
		t.Fatal(err)
	}
	const mac, ip = "52:54:00:00:30:02", "127.1.0.10"
	if _, err := e.hosts.Add(ctx, AddHost{MAC: mac, IP: ip, Appliance: "compute", Rank: -1}); err != nil {
		t.Fatal(err)
	}
	target := blankDisk(t, 256<<20)
	if err := e.installer(t, e.bootScript(t, mac)).Run(ctx, target); err != nil {
		t.Fatal(err)
	}
	// The root filesystem as it stands on the installed disk, for debugfs.
	fsImg := filepath.Join(t.TempDir(), "root.ext4")
	src, err := os.Open(target)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.Create(fsImg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, io.NewSectionReader(src, res.RootStart, res.Root.Size)); err != nil {
		t.Fatal(err)
	}
	dst.Close()
	debugfs := func(req string) string {
		out, err := exec.Command("debugfs", "-R", req, fsImg).Output()
		if err != nil {
			t.Fatalf("debugfs %s: %v", req, err)
		}
		return string(out)
	}
	if got := debugfs("cat /root/.ssh/authorized_keys"); got != adminKey+"\n"+opsKey+"\n" {
		t.Fatalf("root's keys on the installed disk:\n%s", got)
	}
	for p, mode := range map[string]string{"/root/.ssh": "0700", "/root/.ssh/authorized_keys": "0600"} {
		if st := debugfs("stat " + p); !strings.Contains(st, "Mode:  "+mode) {
			t.Errorf("%s on the installed disk, want mode %s:\n%s", p, mode, st)
		}
	}
}
