package tui

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	tea "github.com/charmbracelet/bubbletea"

	"ironbark/installer/frontend"
	"ironbark/installer/frontend/frontendtest"
)

// drive sends keys to the model the way the terminal would: words are
// typed rune by rune, names are keys ("enter", "tab", "esc", ...).
func drive(t *testing.T, m *Installer, keys ...string) {
	t.Helper()
	named := map[string]tea.KeyType{"enter": tea.KeyEnter, "tab": tea.KeyTab, "esc": tea.KeyEsc, "up": tea.KeyUp,
		"down": tea.KeyDown, "left": tea.KeyLeft, "right": tea.KeyRight, "space": tea.KeySpace,
		"backspace": tea.KeyBackspace, "ctrl+u": tea.KeyCtrlU, "shift+tab": tea.KeyShiftTab}
	for _, k := range keys {
		if kt, ok := named[k]; ok {
			m.Update(tea.KeyMsg{Type: kt})
			continue
		}
		for _, r := range k {
			m.Update(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune{r}})
		}
	}
}

func testMachine(t *testing.T) (frontendtest.Machine, string) {
	dir := t.TempDir()
	disk := frontendtest.BlankDisk(t, dir, 1<<30)
	m := frontendtest.TwoNICs()
	m.Nics[1].Carrier = false
	m.Drive = []frontend.Disk{{Path: disk, Size: 1 << 30, Model: "QEMU HARDDISK"}}
	return m, disk
}

func newTestInstaller(t *testing.T, install func(context.Context, frontend.Answers, func(frontend.Progress)) error) (*Installer, string) {
	t.Helper()
	mach, disk := testMachine(t)
	m, err := NewInstaller(InstallerConfig{Answers: frontend.Defaults(), Machine: mach,
		Need:    frontend.Need{ImageSize: 200 << 20, Rolls: []string{"base", "compute", "frontend"}},
		Install: install, SavePath: filepath.Join(t.TempDir(), "answers.yaml"),
		LogTail: func(n int) []string { return []string{"level=ERROR msg=\"install step failed\" step=2"} }})
	if err != nil {
		t.Fatal(err)
	}
	m.Update(tea.WindowSizeMsg{Width: 80, Height: 24})
	return m, disk
}

func wantScreen(t *testing.T, m *Installer, title string) {
	t.Helper()
	if got := m.screens[m.cur].title; got != title {
		t.Fatalf("on screen %q, want %q; status %q\n%s", got, title, m.status, m.View())
	}
}

func wantView(t *testing.T, m *Installer, subs ...string) {
	t.Helper()
	v := m.View()
	// A long reason wraps at the screen's width: words in order count.
	flat := strings.Join(strings.Fields(v), " ")
	for _, s := range subs {
		if !strings.Contains(v, s) && !strings.Contains(flat, strings.Join(strings.Fields(s), " ")) {
			t.Fatalf("screen lacks %q:\n%s", s, v)
		}
	}
	// 80x24: a serial console.
	lines := strings.Split(strings.TrimRight(v, "\n"), "\n")
	if len(lines) > 24 {
		t.Errorf("%d lines, a 24-line terminal shows 24:\n%s", len(lines), v)
	}
	for _, l := range lines {
		if w := len([]rune(stripANSI(l))); w > 80 {
			t.Errorf("line of %d columns: %q", w, stripANSI(l))
		}
	}
}

func stripANSI(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == 0x1b {
			for i < len(s) && !(s[i] >= 'a' && s[i] <= 'z' || s[i] >= 'A' && s[i] <= 'Z') {
				i++
			}
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// fillCluster answers the cluster screen well.
func fillCluster(t *testing.T, m *Installer) {
	drive(t, m, "lab", "tab", "frontend.lab.example", "tab", "ops@lab.example", "enter")
	wantScreen(t, m, "Public network")
}

func fillPublic(t *testing.T, m *Installer) {
	drive(t, m, "tab", "tab", "192.0.2.10", "tab", "255.255.255.0", "tab", "192.0.2.1", "tab", "192.0.2.53", "enter")
	wantScreen(t, m, "Private network")
}

func TestInstallerCluster(t *testing.T) {
	m, _ := newTestInstaller(t, nil)
	wantScreen(t, m, "Cluster")
	wantView(t, m, "[1/8] Cluster", "Cluster name", "Public FQDN", "Esc: Back")
	// Bad input: the reason shows as it is typed, and Next is refused.
	drive(t, m, "Lab Cluster")
	wantView(t, m, "! Cluster name", "lower-case letters")
	drive(t, m, "tab", "frontend", "enter", "enter")
	wantScreen(t, m, "Cluster")
	wantView(t, m, "want a fully qualified name", "fix the fields marked")
	// Back on the first screen stays there and says so.
	drive(t, m, "esc")
	wantScreen(t, m, "Cluster")
	wantView(t, m, "this is the first screen")
	// Fixed, it moves on.
	m2, _ := newTestInstaller(t, nil)
	fillCluster(t, m2)
	if a := m2.Answers(); a.Cluster.Name != "lab" || a.Cluster.FQDN != "frontend.lab.example" {
		t.Fatalf("%+v", a.Cluster)
	}
}

func TestInstallerPublicNetwork(t *testing.T) {
	m, _ := newTestInstaller(t, nil)
	fillCluster(t, m)
	// The interfaces are the machine's, with MAC and link state.
	wantView(t, m, "eth0", "52:54:00:aa:00:01", "link up", "Address", "Netmask")
	drive(t, m, "right")
	wantView(t, m, "eth1", "no link")
	drive(t, m, "left")
	// Missing address and a bad netmask are refused.
	drive(t, m, "tab", "tab", "tab", "255.0.255.0", "enter", "enter", "enter", "enter")
	wantScreen(t, m, "Public network")
	wantView(t, m, "! Address", "missing", "not contiguous")
	// DHCP hides the static fields and needs none of them.
	m.focusRow(m.screens[1], 1)
	drive(t, m, "right")
	if !m.Answers().Public.DHCP {
		t.Fatal("DHCP not chosen")
	}
	v := m.View()
	if strings.Contains(v, "Netmask") || strings.Contains(v, "Gateway") {
		t.Fatalf("static fields shown with DHCP:\n%s", v)
	}
	drive(t, m, "enter")
	wantScreen(t, m, "Private network")
	// Back returns with the answers kept.
	drive(t, m, "esc")
	wantScreen(t, m, "Public network")
	drive(t, m, "esc")
	wantScreen(t, m, "Cluster")
	wantView(t, m, "frontend.lab.example")
}

func TestInstallerPrivateNetwork(t *testing.T) {
	m, _ := newTestInstaller(t, nil)
	fillCluster(t, m)
	fillPublic(t, m)
	wantView(t, m, "10.1.1.1", "255.255.255.0")
	// The same interface as the public one is refused.
	drive(t, m, "left", "enter", "enter", "enter", "enter")
	wantScreen(t, m, "Private network")
	wantView(t, m, "needs its own interface")
	drive(t, m, "right")
	// A private subnet overlapping the public one, too small for the rack.
	drive(t, m, "tab", "ctrl+u", "192.0.2.5", "tab", "ctrl+u", "255.255.255.128", "tab", "ctrl+u", "100", "enter")
	wantScreen(t, m, "Private network")
	wantView(t, m, "overlaps the public subnet 192.0.2.0/24")
	m.focusRow(m.screens[2], 1)
	drive(t, m, "ctrl+u", "10.1.1.1", "enter", "enter", "enter")
	wantScreen(t, m, "Private network")
	wantView(t, m, "has room for 63 nodes", "the rack needs 100")
	m.focusRow(m.screens[2], 2)
	drive(t, m, "ctrl+u", "255.255.255.0", "enter", "enter")
	wantScreen(t, m, "Time")
}

func TestInstallerTimeAdminDiskRolls(t *testing.T) {
	m, _ := newTestInstaller(t, nil)
	fillCluster(t, m)
	fillPublic(t, m)
	drive(t, m, "enter", "enter", "enter", "enter")
	wantScreen(t, m, "Time")
	wantView(t, m, "UTC")
	drive(t, m, "ctrl+u", "Mars/Olympus", "enter", "enter")
	wantScreen(t, m, "Time")
	wantView(t, m, "unknown time zone")
	m.focusRow(m.screens[3], 0)
	drive(t, m, "ctrl+u", "Europe/Paris", "tab", "ntp.lab.example", "enter")
	wantScreen(t, m, "Administrator")

	drive(t, m, "short", "tab", "short", "enter")
	wantView(t, m, "at least 8 characters")
	drive(t, m, "enter")
	wantScreen(t, m, "Administrator")
	m.focusRow(m.screens[4], 0)
	drive(t, m, "ctrl+u", "correct horse battery", "tab", "ctrl+u", "correct horse batterY", "enter", "enter")
	wantScreen(t, m, "Administrator")
	wantView(t, m, "the two passwords differ")
	if strings.Contains(m.View(), "correct horse") {
		t.Fatal("the password shows on the screen")
	}
	m.focusRow(m.screens[4], 1)
	drive(t, m, "ctrl+u", "correct horse battery", "tab", "not a key", "enter")
	wantView(t, m, `key type "not" is not one OpenSSH knows`)
	drive(t, m, "ctrl+u", frontendtest.SSHKey, "enter")
	wantScreen(t, m, "Disk")

	wantView(t, m, "QEMU HARDDISK", "1.0 GiB", "ERASED")
	drive(t, m, "tab", "ctrl+u", "2GiB", "enter")
	wantScreen(t, m, "Disk")
	wantView(t, m, "the frontend needs 2.2 GiB (appliance 200 MiB + data 2.0 GiB)")
	m.focusRow(m.screens[5], 1)
	drive(t, m, "ctrl+u", "lots", "enter")
	wantView(t, m, "want a size such as 20GiB")
	m.focusRow(m.screens[5], 1)
	drive(t, m, "ctrl+u", "rest", "enter")
	wantScreen(t, m, "Rolls")

	wantView(t, m, "[x]", "base", "compute", "frontend")
	drive(t, m, "space", "down", "space", "down", "space", "enter")
	wantScreen(t, m, "Rolls")
	wantView(t, m, "choose at least one roll")
	drive(t, m, "space", "enter")
	wantScreen(t, m, "Summary")
	if r := m.Answers().Rolls; len(r) != 1 || r[0] != "frontend" {
		t.Fatalf("rolls %v", r)
	}
	wantView(t, m, "Europe/Paris", "192.0.2.10", "eth1  10.1.1.1/255.255.255.0", "frontend")
	drive(t, m, "esc")
	wantScreen(t, m, "Rolls")
}

func walkToSummary(t *testing.T, m *Installer) {
	fillCluster(t, m)
	fillPublic(t, m)
	drive(t, m, "enter", "enter", "enter", "enter")
	drive(t, m, "enter", "enter")
	drive(t, m, "correct horse battery", "tab", "correct horse battery", "tab", frontendtest.SSHKey, "enter")
	drive(t, m, "enter", "enter")
	drive(t, m, "enter", "enter", "enter")
	wantScreen(t, m, "Summary")
}

func TestInstallerSummarySaveAndFailure(t *testing.T) {
	boom := errors.New("step 2 of 5 (write appliance: dd) failed: image ended at 12 of 147 bytes")
	m, _ := newTestInstaller(t, func(ctx context.Context, a frontend.Answers, report func(frontend.Progress)) error {
		report(frontend.Progress{Step: "write appliance", Index: 2, Of: 5, Done: 12 << 20, Total: 147 << 20})
		return boom
	})
	walkToSummary(t, m)
	wantView(t, m, "Enter installs", "password set, SSH key")
	drive(t, m, "s")
	wantView(t, m, "answers saved to")
	b, err := os.ReadFile(m.cfg.SavePath)
	if err != nil {
		t.Fatal(err)
	}
	a, err := frontend.Parse(b)
	if err != nil || a.Cluster.FQDN != "frontend.lab.example" || a.Private.Interface != "eth1" || strings.Contains(string(b), "horse") {
		t.Fatalf("saved answers %v:\n%s", err, b)
	}
	// The saved answers pass the same check as the screens'.
	if err := frontend.Validate(&a, m.cfg.Machine, m.cfg.Need); err != nil {
		t.Fatal(err)
	}
	_, cmd := m.Update(tea.KeyMsg{Type: tea.KeyEnter})
	for m.state == stateInstalling {
		_, cmd = m.Update(cmd())
	}
	if m.state != stateFailed {
		t.Fatalf("state %v", m.state)
	}
	wantView(t, m, "FAILED", "step 2 of 5 (write appliance", "install step failed", "Esc: back to the summary")
	drive(t, m, "esc")
	wantScreen(t, m, "Summary")
}

func TestInstallerProgressView(t *testing.T) {
	m, _ := newTestInstaller(t, nil)
	m.state = stateInstalling
	m.Update(progressMsg(frontend.Progress{Step: "write appliance", Index: 2, Of: 5, Done: 64 << 20, Total: 128 << 20,
		Rate: 32 << 20, ETA: 2e9}))
	wantView(t, m, "Step 2 of 5: write appliance", "[#########################.........................]  50%",
		"64 MiB of 128 MiB written, 32 MiB/s, ETA 2s")
}
