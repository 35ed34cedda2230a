package provision

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"ironbark/internal/lab"
)

// proc is a background process with its output in a log file; it is
// killed with its process group when the benchmark ends.
type proc struct {
	name, log string
	cmd       *exec.Cmd
	done      chan struct{}
	err       error
}

func start(b *testing.B, dir, name string, cmd *exec.Cmd) *proc {
	b.Helper()
	p := &proc{name: name, log: filepath.Join(dir, name+".log"), cmd: cmd, done: make(chan struct{})}
	f, err := os.Create(p.log)
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		b.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	b.Cleanup(p.stop)
	return p
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop ends the process group: SIGTERM, then SIGKILL after 5 s.
func (p *proc) stop() {
	if p.exited() {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

func (p *proc) waitExit(b *testing.B, timeout time.Duration) {
	b.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		b.Fatalf("%s still running after %v; output tail:\n%s", p.name, timeout, tailFile(p.log, 20))
	}
}

// waitLog waits for a line containing s in the process's output.
func (p *proc) waitLog(b *testing.B, s string, timeout time.Duration) {
	b.Helper()
	waitConsole(b, p, p.log, s, time.Now(), timeout)
}

// findLine returns the first line of the file that contains s.
func findLine(path, s string) (string, bool) {
	data, _ := os.ReadFile(path)
	for _, l := range strings.Split(string(data), "\n") {
		if strings.Contains(l, s) {
			return strings.TrimSpace(l), true
		}
	}
	return "", false
}

// waitConsole waits until file (p's console or log) has a line with s and
// returns the time from t0; p ending first, or the timeout, is fatal.
func waitConsole(b *testing.B, p *proc, file, s string, t0 time.Time, timeout time.Duration) time.Duration {
	b.Helper()
	for {
		exited := p.exited()
		if _, ok := findLine(file, s); ok {
			return time.Since(t0)
		}
		if exited {
			b.Fatalf("%s ended (%v) before %q; tail of %s:\n%s", p.name, p.err, s, file, tailFile(file, 30))
		}
		if time.Since(t0) > timeout {
			b.Fatalf("%s: no %q within %v; tail of %s:\n%s", p.name, s, timeout, file, tailFile(file, 30))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func tailFile(path string, n int) string {
	data, _ := os.ReadFile(path)
	l := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	return strings.Join(l[max(0, len(l)-n):], "\n")
}

// qemu returns a TCG machine with a serial console to a file, run inside
// ns when it is not nil.
func qemu(ctx context.Context, ns *lab.NetNS, console string, args ...string) *exec.Cmd {
	all := append([]string{"-accel", "tcg", "-machine", "pc", "-m", "512", "-smp", "1",
		"-nodefaults", "-no-user-config", "-display", "none", "-vga", "none",
		"-serial", "file:" + console}, args...)
	if ns != nil {
		return ns.Command(ctx, "qemu-system-x86_64", all...)
	}
	return exec.CommandContext(ctx, "qemu-system-x86_64", all...)
}

// fleet makes blank BIOS machines on the lab bridge, numbered across
// rounds so every machine has a fresh MAC and is discovered anew.
type fleet struct {
	net  *lab.LabNet
	dir  string
	made int
}

// provision powers on size blank machines at once and returns the time
// until the last one, and each one, printed the installed image's
// marker after installing over PXE and rebooting from its disk.
func (f *fleet) provision(b *testing.B, size int) (time.Duration, []time.Duration) {
	b.Helper()
	type machine struct {
		name, console string
		cmd           *exec.Cmd
		p             *proc
	}
	ms := make([]*machine, size)
	for i := range ms {
		f.made++
		name := fmt.Sprintf("vm%02d", f.made)
		disk := filepath.Join(f.dir, name+".disk")
		if err := os.WriteFile(disk, nil, 0o644); err != nil {
			b.Fatal(err)
		}
		if err := os.Truncate(disk, 512<<20); err != nil {
			b.Fatal(err)
		}
		mac := fmt.Sprintf("52:54:00:1c:%02x:%02x", f.made>>8, f.made&0xff)
		console := filepath.Join(f.dir, name+".console.log")
		ms[i] = &machine{name: name, console: console, cmd: qemu(context.Background(), f.net.NS, console,
			"-boot", "n",
			"-netdev", "tap,id=n0,ifname="+f.net.NS.Tap(b, f.net.Bridge)+",script=no,downscript=no",
			"-device", "virtio-net-pci,netdev=n0,mac="+mac,
			"-drive", "file="+disk+",if=none,id=d0,format=raw",
			"-device", "virtio-blk-pci,drive=d0")}
	}
	t0 := time.Now()
	for _, m := range ms {
		m.p = start(b, f.dir, m.name+".qemu", m.cmd)
	}
	// Poll every machine's console together, so each one's time is its own.
	each := make([]time.Duration, size)
	for left := size; left > 0; {
		for i, m := range ms {
			if each[i] != 0 {
				continue
			}
			exited := m.p.exited()
			if line, ok := findLine(m.console, installedMarker); ok {
				each[i] = time.Since(t0)
				left--
				b.Logf("  %s: %s after %.1f s", m.name, line, each[i].Seconds())
				continue
			}
			if exited || time.Since(t0) > 30*time.Minute {
				b.Fatalf("%s (round of %d) never printed %q (exited: %v, %v); console tail:\n%s",
					m.name, size, installedMarker, exited, m.p.err, tailFile(m.console, 40))
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, m := range ms {
		m.p.waitExit(b, time.Minute) // the installed image powers off
	}
	return slices.Max(each), each
}
