package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"ironbark/installer/frontend"
	"ironbark/installer/frontend/frontendtest"
	"ironbark/internal/lab"
)

// TestInstallScreensInTerminal drives the real ironbark binary's installer
// screens in an 80x24 terminal (tmux), inside a namespace whose two NICs
// are what the screens offer, through every screen (a bad value and Back
// on the way) onto a disk image file; then checks the disk.
func TestInstallScreensInTerminal(t *testing.T) {
	lab.Require(t, "tmux", "ip", "sfdisk", "debugfs", "go")
	dir := t.TempDir()
	bin := filepath.Join(dir, "ironbark")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	img := frontendtest.Image(t, dir, frontendtest.ImageSpec{})
	disk := frontendtest.BlankDisk(t, dir, 600<<20)
	ns := lab.NewNetNS(t)
	pub, priv := ns.Veth(t, "")
	if pub > priv { // the screens list NICs by name and offer the first as public
		pub, priv = priv, pub
	}
	saved := filepath.Join(dir, "answers.yaml")
	done := filepath.Join(dir, "exit-status")
	cmd := "ip netns exec " + ns.Name + " " + bin + " install --image " + img + " --disk-file " + disk +
		" --save " + saved + " --log " + filepath.Join(dir, "install.log") + "; echo $? > " + done + "; sleep 600"
	term := lab.NewTerminal(t, 80, 24, cmd)
	wait := func(subs ...string) string { t.Helper(); return term.WaitFor(t, time.Minute, subs...) }

	wait("[1/8] Cluster", "Cluster name")
	term.SendKeys(t, "-l:Lab", "Tab")
	wait("lower-case letters")
	term.SendKeys(t, "BTab", "C-u", "-l:lab", "Tab", "-l:frontend.lab.example", "Tab", "-l:ops@lab.example", "Enter")
	s := wait("[2/8] Public network", pub, "link up")
	if !strings.Contains(s, "< "+pub) {
		t.Fatalf("public NIC %s not offered first:\n%s", pub, s)
	}
	// Back, and forward again: the answers stay.
	term.SendKeys(t, "Escape")
	wait("[1/8] Cluster", "frontend.lab.example")
	term.SendKeys(t, "Tab", "Tab", "Enter")
	wait("[2/8] Public network")
	term.SendKeys(t, "Tab", "Tab", "-l:192.0.2.10", "Tab", "-l:255.255.255.0", "Tab", "-l:192.0.2.1", "Tab", "-l:192.0.2.53", "Enter")
	wait("[3/8] Private network", priv, "10.1.1.1")
	term.SendKeys(t, "Enter", "Enter", "Enter", "Enter")
	wait("[4/8] Time", "UTC")
	term.SendKeys(t, "Enter", "Enter")
	wait("[5/8] Administrator")
	term.SendKeys(t, "-l:correct horse battery", "Tab", "-l:correct horse battery", "Tab", "-l:"+frontendtest.SSHKey, "Enter")
	wait("[6/8] Disk")
	// The machine's own disks come first: pick the image file, and never
	// go on unless it is the one chosen.
	for i := 0; !strings.Contains(term.Screen(t), "image file >"); i++ {
		if i > 16 {
			t.Fatalf("the image file is not offered:\n%s", term.Screen(t))
		}
		before := term.Screen(t)
		term.SendKeys(t, "Right")
		for deadline := time.Now().Add(time.Minute); term.Screen(t) == before; {
			if time.Now().After(deadline) {
				t.Fatal("Right did not change the disk shown")
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	term.SendKeys(t, "Enter", "Enter")
	wait("[7/8] Rolls")
	term.SendKeys(t, "Enter")
	wait("[8/8] Summary", "Private (cluster0)", priv)
	term.SendKeys(t, "s")
	wait("answers saved to")
	term.SendKeys(t, "Enter")
	term.WaitFor(t, 3*time.Minute, "is installed on")
	term.SendKeys(t, "Enter")
	for deadline := time.Now().Add(time.Minute); ; {
		if b, err := os.ReadFile(done); err == nil {
			if strings.TrimSpace(string(b)) != "0" {
				t.Fatalf("ironbark install exited %s:\n%s", b, term.Screen(t))
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ironbark install did not exit:\n%s", term.Screen(t))
		}
		time.Sleep(100 * time.Millisecond)
	}

	// The disk: GPT with the appliance's partitions and the data partition.
	out, err := exec.Command("sfdisk", "--dump", disk).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "label: gpt") || !strings.Contains(string(out), `name="ironbark-data"`) ||
		!strings.Contains(string(out), `name="EFI System"`) {
		t.Fatalf("sfdisk: %v\n%s", err, out)
	}
	// The saved answers install the same frontend unattended.
	b, err := os.ReadFile(saved)
	if err != nil {
		t.Fatal(err)
	}
	a, err := frontend.Parse(b)
	if err != nil || a.Private.Interface != priv || a.Public.Interface != pub || strings.Contains(string(b), "horse") {
		t.Fatalf("saved answers: %v\n%s", err, b)
	}
	// The data partition carries the configuration from the screens.
	var dataStart, dataSize string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, "ironbark-data") {
			for _, f := range strings.Split(l, ",") {
				k, v, _ := strings.Cut(strings.TrimSpace(f), "=")
				switch strings.TrimSpace(strings.TrimPrefix(k, disk+"3 : ")) {
				case "start":
					dataStart = strings.TrimSpace(v)
				case "size":
					dataSize = strings.TrimSpace(v)
				}
			}
		}
	}
	part := filepath.Join(dir, "data.img")
	if out, err := exec.Command("dd", "if="+disk, "of="+part, "bs=512", "skip="+dataStart, "count="+dataSize, "status=none").CombinedOutput(); err != nil {
		t.Fatalf("dd: %v %s", err, out)
	}
	cfg, err := exec.Command("debugfs", "-R", "cat /frontend.json", part).Output()
	if err != nil || !strings.Contains(string(cfg), `"pxeInterface": "`+priv+`"`) || !strings.Contains(string(cfg), `"address": "192.0.2.10/24"`) {
		t.Fatalf("frontend.json: %v\n%s", err, cfg)
	}
}
