package tui

import (
	"bytes"
	"context"
	"log/slog"
	"os/exec"
	"strings"
	"testing"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/x/exp/teatest"

	"ironbark/installer/frontend"
	"ironbark/installer/frontend/frontendtest"
	"ironbark/internal/lab"
)

// TestInstallerProgram runs the screens as a program on an 80x24 terminal
// (teatest), answers every screen, and installs for real onto a disk
// image file.
func TestInstallerProgram(t *testing.T) {
	lab.Require(t, "sfdisk")
	dir := t.TempDir()
	img := frontendtest.Image(t, dir, frontendtest.ImageSpec{})
	mach, disk := testMachine(t)
	md := frontend.Medium{Image: frontend.Image{Path: img}}
	l, err := md.Image.Layout()
	if err != nil {
		t.Fatal(err)
	}
	var logBuf bytes.Buffer
	m, err := NewInstaller(InstallerConfig{Answers: frontend.Defaults(), Machine: mach,
		Need: frontend.Need{ImageSize: l.Size, Rolls: []string{"base", "compute", "frontend"}},
		Install: func(ctx context.Context, a frontend.Answers, report func(frontend.Progress)) error {
			return frontend.Install(ctx, a, mach, md, slog.New(slog.NewTextHandler(&logBuf, nil)), report)
		}})
	if err != nil {
		t.Fatal(err)
	}
	tm := teatest.NewTestModel(t, m, teatest.WithInitialTermSize(80, 24))
	key := func(k tea.KeyType) { tm.Send(tea.KeyMsg{Type: k}) }
	waitFor := func(s string) {
		t.Helper()
		teatest.WaitFor(t, tm.Output(), func(b []byte) bool { return bytes.Contains(b, []byte(s)) },
			teatest.WithDuration(2*time.Minute), teatest.WithCheckInterval(20*time.Millisecond))
	}
	typeLine := func(words ...string) {
		for i, w := range words {
			if i > 0 {
				key(tea.KeyTab)
			}
			tm.Type(w)
		}
		key(tea.KeyEnter)
	}
	waitFor("[1/8] Cluster")
	typeLine("lab", "frontend.lab.example", "ops@lab.example")
	waitFor("[2/8] Public network")
	key(tea.KeyTab)
	key(tea.KeyTab)
	typeLine("192.0.2.10", "255.255.255.0", "192.0.2.1", "192.0.2.53")
	waitFor("[3/8] Private network")
	for range 4 {
		key(tea.KeyEnter)
	}
	waitFor("[4/8] Time")
	key(tea.KeyEnter)
	key(tea.KeyEnter)
	waitFor("[5/8] Administrator")
	typeLine("correct horse battery", "correct horse battery", frontendtest.SSHKey)
	waitFor("[6/8] Disk")
	key(tea.KeyEnter)
	key(tea.KeyEnter)
	waitFor("[7/8] Rolls")
	for range 3 {
		key(tea.KeyEnter)
	}
	waitFor("[8/8] Summary")
	key(tea.KeyEnter)
	waitFor("is installed on")
	key(tea.KeyEnter)
	fm := tm.FinalModel(t, teatest.WithFinalTimeout(time.Minute)).(*Installer)
	if !fm.Installed {
		t.Fatalf("not installed:\n%s", logBuf.String())
	}
	out, err := exec.Command("sfdisk", "--dump", disk).CombinedOutput()
	if err != nil || !strings.Contains(string(out), `name="ironbark-data"`) || !strings.Contains(string(out), "label: gpt") {
		t.Fatalf("installed disk: %v\n%s", err, out)
	}
}
