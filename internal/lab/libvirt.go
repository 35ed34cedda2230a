package lab

import (
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"ironbark/internal/filelock"
)

// QemuURI is the libvirt URI end-to-end tests use.
const QemuURI = "qemu:///system"

// labRun holds the lab's shared bookkeeping for libvirt across test
// binaries: a lock, the daemons the lab started, and one file per user.
const labRun = "/run/ironbark-lab"

// Libvirt makes sure virtlogd and libvirtd run (there is no systemd here:
// see LAB.md) and returns the qemu URI. Test binaries calling it at once
// share the daemons: whoever starts them records it, every user registers
// itself, and the last user to leave stops what the lab started. Daemons
// that were already running are never stopped.
func Libvirt(t testing.TB) string {
	t.Helper()
	Require(t, "libvirtd", "virtlogd", "virsh", "qemu-system-x86_64")
	if links, _ := filepath.Glob("/etc/libvirt/qemu/networks/autostart/*.xml"); len(links) > 0 {
		Missing(t, fmt.Sprintf("libvirt would autostart networks %v (NAT toward the outside); remove the autostart links", links))
	}
	if err := os.MkdirAll(filepath.Join(labRun, "libvirt-users"), 0o755); err != nil {
		Missing(t, err.Error())
	}
	unlock, err := filelock.Lock(filepath.Join(labRun, "libvirt.lock"))
	if err != nil {
		Missing(t, err.Error())
	}
	defer unlock()
	// One file per call (pid-random): parallel tests in one binary each
	// hold their own claim.
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	me := filepath.Join(labRun, "libvirt-users", fmt.Sprintf("%d-%x", os.Getpid(), rnd))
	if err := os.WriteFile(me, nil, 0o644); err != nil {
		Missing(t, err.Error())
	}
	t.Cleanup(func() { releaseLibvirt(t, me) })
	// Without this libvirt re-probes qemu on every call (+4 s a call).
	if _, err := os.Stat("/dev/kvm"); err == nil {
		_ = exec.Command("chgrp", "kvm", "/dev/kvm").Run()
		_ = os.Chmod("/dev/kvm", 0o660)
	}
	for _, d := range []struct{ name, pidfile string }{
		{"virtlogd", "/run/virtlogd.pid"},
		{"libvirtd", "/run/libvirtd.pid"},
	} {
		if pidAlive(d.pidfile) {
			continue
		}
		if out, err := exec.Command(d.name, "-d").CombinedOutput(); err != nil {
			Missing(t, fmt.Sprintf("start %s: %v: %s", d.name, err, out))
		}
		pid, err := waitPidfile(d.pidfile)
		if err != nil {
			Missing(t, fmt.Sprintf("start %s: %v", d.name, err))
		}
		f, err := os.OpenFile(filepath.Join(labRun, "libvirt-started"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err == nil {
			fmt.Fprintf(f, "%s %d\n", d.name, pid)
			f.Close()
		}
		t.Logf("lab: started %s (pid %d)", d.name, pid)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		out, err := exec.Command("virsh", "-c", QemuURI, "version").CombinedOutput()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			Missing(t, fmt.Sprintf("libvirtd does not answer: %v: %s", err, out))
		}
		time.Sleep(200 * time.Millisecond)
	}
	return QemuURI
}

// releaseLibvirt unregisters a user and, when it was the last live one,
// stops the daemons the lab started (libvirtd first).
func releaseLibvirt(t testing.TB, me string) {
	unlock, err := filelock.Lock(filepath.Join(labRun, "libvirt.lock"))
	if err != nil {
		t.Logf("lab: %v", err)
		return
	}
	defer unlock()
	os.Remove(me)
	users, _ := os.ReadDir(filepath.Join(labRun, "libvirt-users"))
	for _, u := range users {
		p, _, _ := strings.Cut(u.Name(), "-")
		pid, err := strconv.Atoi(p)
		if err == nil && syscall.Kill(pid, 0) == nil {
			return // someone still uses the daemons
		}
		os.Remove(filepath.Join(labRun, "libvirt-users", u.Name())) // a user that died
	}
	started := filepath.Join(labRun, "libvirt-started")
	b, err := os.ReadFile(started)
	if err != nil {
		return
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		f := strings.Fields(lines[i])
		if len(f) != 2 {
			continue
		}
		pid, err := strconv.Atoi(f[1])
		if err != nil || !isProcess(pid, f[0]) {
			continue
		}
		_ = syscall.Kill(pid, syscall.SIGTERM)
		for k := 0; k < 100 && syscall.Kill(pid, 0) == nil; k++ {
			time.Sleep(50 * time.Millisecond)
		}
		t.Logf("lab: stopped %s (pid %d)", f[0], pid)
	}
	os.Remove(started)
}

func pidAlive(pidfile string) bool {
	b, err := os.ReadFile(pidfile)
	if err != nil {
		return false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	return err == nil && syscall.Kill(pid, 0) == nil
}

func waitPidfile(pidfile string) (int, error) {
	for k := 0; k < 200; k++ {
		if b, err := os.ReadFile(pidfile); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && syscall.Kill(pid, 0) == nil {
				return pid, nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return 0, errors.New("no pid file " + pidfile)
}

// isProcess checks that pid still runs the named program, so a recycled
// pid is never signalled.
func isProcess(pid int, name string) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	return err == nil && strings.TrimSpace(string(b)) == name
}
