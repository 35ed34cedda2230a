package rack

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"ironbark/internal/lab"
)

// vm is one qemu machine (TCG) in the lab namespace, its serial console
// in a file.
type vm struct {
	name    string
	console string
	proc    *lab.Process
	done    chan struct{}
}

// nic is a virtio NIC on a lab bridge.
type nic struct{ bridge, mac string }

// startVM starts qemu in the lab namespace with args plus the NICs (taps
// on their bridges) and a serial console file; it is stopped at the end
// of the run.
func (r *runner) startVM(name string, nics []nic, args ...string) *vm {
	v := &vm{name: name, console: filepath.Join(r.work, name+".console"), done: make(chan struct{})}
	_ = os.WriteFile(v.console, nil, 0o644)
	all := []string{"-accel", "tcg", "-machine", "pc", "-nodefaults", "-no-user-config", "-display", "none", "-vga", "none",
		"-serial", "file:" + v.console}
	for i, n := range nics {
		tap := r.ns.Tap(r.undo, n.bridge)
		all = append(all, "-netdev", fmt.Sprintf("tap,id=n%d,ifname=%s,script=no,downscript=no", i, tap),
			"-device", fmt.Sprintf("virtio-net-pci,netdev=n%d,mac=%s", i, n.mac))
	}
	v.proc = r.ns.Start(r.undo, "qemu-system-x86_64", append(all, args...)...)
	// The kit waits for the process; this notices when it is gone.
	go func() {
		for syscall.Kill(v.proc.Cmd.Process.Pid, 0) == nil {
			time.Sleep(300 * time.Millisecond)
		}
		close(v.done)
	}()
	r.undo.made("qemu " + name)
	return v
}

func (v *vm) text() string { b, _ := os.ReadFile(v.console); return string(b) }

func (v *vm) running() bool {
	select {
	case <-v.done:
		return false
	default:
		return true
	}
}

// await waits for s on the console; a line with one of fail, or qemu
// ending, fails it.
func (v *vm) await(ctx context.Context, s string, fail ...string) error {
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		txt := v.text()
		if strings.Contains(txt, s) {
			return nil
		}
		for _, f := range fail {
			if strings.Contains(txt, f) {
				return fmt.Errorf("%s: %q on its console:\n%s", v.name, f, tailLines(txt, 30))
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %q not on its console: %w; console tail:\n%s", v.name, s, ctx.Err(), tailLines(txt, 30))
		case <-v.done:
			if strings.Contains(v.text(), s) {
				return nil
			}
			return fmt.Errorf("%s: qemu ended before %q (%s); console tail:\n%s", v.name, s, strings.TrimSpace(v.proc.Output()), tailLines(v.text(), 30))
		case <-t.C:
		}
	}
}

// stop powers the machine off now.
func (v *vm) stop() {
	_ = syscall.Kill(-v.proc.Cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-v.done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-v.proc.Cmd.Process.Pid, syscall.SIGKILL)
		<-v.done
	}
}
