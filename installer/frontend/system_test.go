package frontend_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"ironbark/installer/frontend"
	"ironbark/installer/frontend/frontendtest"
)

// TestApplySystem: `ironbark frontend setup` onto a system tree made from
// the data directory the installer stages: networkd files from the
// answers, root's password and the admin's key, a stale network file
// gone, a hand-added key kept; a second run changes nothing.
func TestApplySystem(t *testing.T) {
	data, root := t.TempDir(), t.TempDir()
	if err := frontend.StageDataDir(context.Background(), data, frontendtest.Answers("/dev/vda")); err != nil {
		t.Fatal(err)
	}
	c, err := frontend.LoadConfig(data)
	if err != nil {
		t.Fatal(err)
	}
	const otherKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB other@lab"
	for p, s := range map[string]string{
		"etc/shadow": "root:*:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n",
		"etc/systemd/network/30-ironbark-old.network": "[Match]\nName=eth9\n",
		"etc/systemd/network/99-site.network":         "[Match]\nName=eth7\n",
		"root/.ssh/authorized_keys":                   otherKey + "\n",
	} {
		if err := os.MkdirAll(filepath.Join(root, filepath.Dir(p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, p), []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	log := slog.New(slog.DiscardHandler)
	for run := range 2 {
		if err := frontend.ApplySystem(root, c, log); err != nil {
			t.Fatalf("run %d: %v", run+1, err)
		}
	}
	read := func(p string) string {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(root, p))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	for p, wants := range map[string][]string{
		"etc/systemd/network/10-ironbark-public.network":   {"Name=eth0", "Address=192.0.2.10/24", "Gateway=192.0.2.1", "DNS=192.0.2.53"},
		"etc/systemd/network/20-ironbark-cluster0.network": {"Name=eth1", "Address=10.1.1.1/24", "RequiredForOnline=no", "ConfigureWithoutCarrier=yes"},
		"etc/hostname":    {"frontend\n"},
		"etc/hosts":       {"192.0.2.10\tfrontend.lab.example frontend"},
		"etc/resolv.conf": {"nameserver 192.0.2.53"},
		"etc/chrony/conf.d/ironbark-frontend.conf": {"server pool.ntp.org iburst", "allow 10.1.1.0/24"},
		"etc/systemd/network/99-site.network":      {"eth7"},
		"etc/timezone":                             {"UTC"},
	} {
		got := read(p)
		for _, w := range wants {
			if !strings.Contains(got, w) {
				t.Errorf("%s lacks %q:\n%s", p, w, got)
			}
		}
	}
	if _, err := os.Stat(filepath.Join(root, "etc/systemd/network/30-ironbark-old.network")); !os.IsNotExist(err) {
		t.Errorf("the stale network file is still there (%v)", err)
	}
	shadow := strings.Split(read("etc/shadow"), "\n")
	hash := strings.Split(shadow[0], ":")[1]
	if !frontend.CheckPassword(hash, "correct horse battery") || !strings.HasPrefix(hash, "$6$") {
		t.Errorf("root's shadow entry does not hold the admin password: %s", shadow[0])
	}
	if shadow[1] != "daemon:*:19000:0:99999:7:::" {
		t.Errorf("another account's entry changed: %s", shadow[1])
	}
	keys := read("root/.ssh/authorized_keys")
	if keys != otherKey+"\n"+frontendtest.SSHKey+"\n" {
		t.Errorf("authorized_keys:\n%s", keys)
	}
	if st, _ := os.Stat(filepath.Join(root, "root/.ssh")); st.Mode().Perm() != 0o700 {
		t.Errorf("root/.ssh is %v", st.Mode().Perm())
	}
	b, err := os.ReadFile(filepath.Join(data, "frontend.env"))
	if err != nil {
		t.Fatal(err)
	}
	env := string(b)
	for _, w := range []string{"IRONBARK_ENDPOINT='https://192.0.2.10:8773/'", "IRONBARK_PRIVATE_IP='10.1.1.1'", "IRONBARK_PRIVATE_IF='eth1'"} {
		if !strings.Contains(env, w) {
			t.Errorf("frontend.env lacks %s:\n%s", w, env)
		}
	}
}

// TestLoadConfigBad: a missing or foreign configuration is refused with
// its path.
func TestLoadConfigBad(t *testing.T) {
	dir := t.TempDir()
	if _, err := frontend.LoadConfig(dir); err == nil || !strings.Contains(err.Error(), "frontend.json") {
		t.Errorf("no frontend.json: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "frontend.json"), []byte(`{"version": 9}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := frontend.LoadConfig(dir); err == nil || !strings.Contains(err.Error(), "version 9") {
		t.Errorf("version 9: %v", err)
	}
}
