package provision

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
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
	b.Cleanup(func() {
		p.stop()
		// The work directory goes with the benchmark: keep what explains a failure.
		if out := strings.TrimSpace(tailFile(p.log, 25)); b.Failed() && out != "" {
			b.Logf("%s output (tail):\n%s", name, out)
		}
	})
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

// waitLog waits for a line containing s in the process's output; the
// process ending first, or the timeout, is fatal.
func (p *proc) waitLog(ctx context.Context, b *testing.B, s string, timeout time.Duration) {
	b.Helper()
	for t0 := time.Now(); ; time.Sleep(50 * time.Millisecond) {
		exited := p.exited()
		if _, ok := findLine(p.log, s); ok {
			return
		}
		interrupted(ctx, b)
		if exited || time.Since(t0) > timeout {
			b.Fatalf("%s: no %q (exited: %v, %v); output tail:\n%s", p.name, s, exited, p.err, tailFile(p.log, 30))
		}
	}
}

// interrupted ends the benchmark, through its cleanups, once ctx is done
// (SIGINT or SIGTERM): the namespace, taps and VMs must not outlive it.
func interrupted(ctx context.Context, b *testing.B) {
	b.Helper()
	if ctx.Err() != nil {
		b.Fatalf("interrupted: %v", context.Cause(ctx))
	}
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

// machine is one qemu run whose serial console is watched for a marker.
type machine struct {
	name, mac, console string
	cmd                *exec.Cmd
}

// bootAll powers all machines on at once and returns, for each machine
// and each of marks, the time from power-on until its console first
// showed that mark (0 if it never did); a machine is done with the last
// mark. Then it waits for them to power off. A machine that stops or
// hangs before its last mark is fatal.
func bootAll(ctx context.Context, b *testing.B, dir string, ms []*machine, marks []string, timeout time.Duration) [][]time.Duration {
	b.Helper()
	last := len(marks) - 1
	ps := make([]*proc, len(ms))
	took := make([][]time.Duration, len(ms))
	t0 := time.Now()
	for i, m := range ms {
		ps[i] = start(b, dir, m.name+".qemu", m.cmd)
		took[i] = make([]time.Duration, len(marks))
	}
	// Poll every console together, so each machine's time is its own.
	for left := len(ms); left > 0; time.Sleep(50 * time.Millisecond) {
		interrupted(ctx, b)
		for i, m := range ms {
			if took[i][last] != 0 {
				continue
			}
			exited := ps[i].exited()
			data, _ := os.ReadFile(m.console)
			for j, mark := range marks {
				if took[i][j] == 0 && strings.Contains(string(data), mark) {
					took[i][j] = time.Since(t0)
				}
			}
			if took[i][last] != 0 {
				left--
				continue
			}
			if exited || time.Since(t0) > timeout {
				b.Fatalf("%s (one of %d booted at once) never printed %q (exited: %v, %v); console tail:\n%s",
					m.name, len(ms), marks[last], exited, ps[i].err, tailFile(m.console, 40))
			}
		}
	}
	for _, p := range ps {
		p.waitExit(b, time.Minute)
	}
	return took
}

// directBoot boots n machines at once straight into the kernel and the
// floor initramfs and returns the time until the last printed its marker.
func directBoot(ctx context.Context, b *testing.B, k *lab.Kernel, initrd, dir string, n int) time.Duration {
	b.Helper()
	ms := make([]*machine, n)
	for i := range ms {
		name := lab.IfName("direct")
		console := filepath.Join(dir, name+".console.log")
		ms[i] = &machine{name: name, console: console, cmd: qemu(context.Background(), nil, console,
			"-kernel", k.Vmlinuz, "-initrd", initrd, "-append", "console=ttyS0 panic=-1 quiet")}
	}
	var all time.Duration
	for _, t := range bootAll(ctx, b, dir, ms, []string{floorMarker}, 10*time.Minute) {
		all = max(all, t[0])
	}
	return all
}

// fleet makes blank BIOS machines on the lab bridge, numbered across
// rounds so every machine has a fresh MAC and is discovered anew.
type fleet struct {
	net  *lab.LabNet
	dir  string
	made int
}

// blank makes size blank machines: an empty disk, network boot first.
func (f *fleet) blank(b *testing.B, size int) []*machine {
	b.Helper()
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
		ms[i] = &machine{name: name, mac: mac, console: console, cmd: qemu(context.Background(), f.net.NS, console,
			"-boot", "n",
			"-netdev", "tap,id=n0,ifname="+f.net.NS.Tap(b, f.net.Bridge)+",script=no,downscript=no",
			"-device", "virtio-net-pci,netdev=n0,mac="+mac,
			"-drive", "file="+disk+",if=none,id=d0,format=raw",
			"-device", "virtio-blk-pci,drive=d0")}
	}
	return ms
}
