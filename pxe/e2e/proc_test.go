package e2e

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// proc is a background process whose output goes to a log file and whose
// lines can be waited for.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string

	mu    sync.Mutex
	lines []string
	done  chan struct{}
	err   error
}

// startProc starts cmd; it is killed when the test ends.
func startProc(t *testing.T, name string, cmd *exec.Cmd, logDir string) *proc {
	t.Helper()
	p := &proc{name: name, cmd: cmd, log: filepath.Join(logDir, name+".log"), done: make(chan struct{})}
	f, err := os.Create(p.log)
	if err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	cmd.Stdout = io.MultiWriter(f, pw)
	cmd.Stderr = cmd.Stdout
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			p.mu.Lock()
			p.lines = append(p.lines, sc.Text())
			p.mu.Unlock()
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	go func() {
		p.err = cmd.Wait()
		pw.Close()
		f.Close()
		close(p.done)
	}()
	t.Cleanup(func() { p.Stop(t) })
	return p
}

// Stop kills the process (if it still runs) and waits for it.
func (p *proc) Stop(t *testing.T) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// Interrupt sends SIGINT and waits for the process to end.
func (p *proc) Interrupt(t *testing.T, timeout time.Duration) error {
	t.Helper()
	_ = p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		t.Fatalf("%s did not end within %v of SIGINT", p.name, timeout)
		return nil
	}
}

// Lines returns the output lines so far.
func (p *proc) Lines() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.lines...)
}

// WaitLine waits for an output line containing s and returns it.
func (p *proc) WaitLine(t *testing.T, s string, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		for _, l := range p.Lines() {
			if strings.Contains(l, s) {
				return l
			}
		}
		select {
		case <-p.done:
			// one more look: the line may have arrived with the exit
			for _, l := range p.Lines() {
				if strings.Contains(l, s) {
					return l
				}
			}
			t.Fatalf("%s exited (%v) before printing %q; last output:\n%s", p.name, p.err, s, p.tail(40))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no line with %q within %v; last output:\n%s", p.name, s, timeout, p.tail(40))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// WaitExit waits for the process to end.
func (p *proc) WaitExit(t *testing.T, timeout time.Duration) {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		t.Fatalf("%s still running after %v; last output:\n%s", p.name, timeout, p.tail(40))
	}
}

func (p *proc) tail(n int) string {
	l := p.Lines()
	return strings.Join(l[max(0, len(l)-n):], "\n")
}

// buildBinaries builds ironbark and the static installer, or takes them
// from $IRONBARK_E2E_BIN_DIR (ironbark, ironbark-installer) when set.
func buildBinaries(t *testing.T, dir string) (ironbark, installer string) {
	t.Helper()
	if d := os.Getenv("IRONBARK_E2E_BIN_DIR"); d != "" {
		return filepath.Join(d, "ironbark"), filepath.Join(d, "ironbark-installer")
	}
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	ironbark, installer = filepath.Join(dir, "ironbark"), filepath.Join(dir, "ironbark-installer")
	for _, b := range []struct{ out, pkg, cgo string }{
		{ironbark, "./cmd/ironbark", "0"},
		{installer, "./cmd/ironbark-installer", "0"},
	} {
		cmd := exec.Command("go", "build", "-o", b.out, b.pkg)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED="+b.cgo)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", b.pkg, err, out)
		}
	}
	return ironbark, installer
}

// ironbarkCmd runs one ironbark command to completion and returns its
// output.
func ironbarkCmd(t *testing.T, bin string, args ...string) string {
	t.Helper()
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ironbark %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	t.Logf("$ ironbark %s\n%s", strings.Join(args, " "), out)
	return string(out)
}
