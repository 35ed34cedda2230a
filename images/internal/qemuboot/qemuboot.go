// Package qemuboot boots images in qemu (TCG) for the images tests and
// waits for a marker on the guest's serial console. Test support only:
// every qemu it starts is killed through t.Cleanup.
package qemuboot

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"ironbark/internal/lab"
)

// Firmware paths of Debian's ovmf package.
const (
	OVMFCode = "/usr/share/OVMF/OVMF_CODE_4M.fd"
	OVMFVars = "/usr/share/OVMF/OVMF_VARS_4M.fd"
)

// Options for one boot.
type Options struct {
	Args    []string      // machine-specific qemu arguments (-kernel, -drive, -cdrom, ...)
	UEFI    bool          // boot with OVMF (a private copy of the variable store)
	Marker  string        // text that proves the guest got where it should
	Timeout time.Duration // default 90 s
	Memory  string        // default 512
}

// Boot starts qemu with the serial console in a file and returns the
// console text once Marker shows up; it fails the test on timeout or when
// qemu exits without printing the marker.
func Boot(t testing.TB, o Options) string {
	t.Helper()
	lab.Require(t, "qemu-system-x86_64")
	dir := t.TempDir()
	logPath := filepath.Join(dir, "console.log")
	if o.Timeout == 0 {
		o.Timeout = 90 * time.Second
	}
	if o.Memory == "" {
		o.Memory = "512"
	}
	args := []string{"-accel", "tcg", "-m", o.Memory, "-display", "none", "-monitor", "none",
		"-serial", "file:" + logPath, "-no-reboot", "-nodefaults"}
	if o.UEFI {
		if _, err := os.Stat(OVMFCode); err != nil {
			lab.Missing(t, "OVMF firmware (apt-get install ovmf): "+err.Error())
		}
		vars := filepath.Join(dir, "vars.fd")
		b, err := os.ReadFile(OVMFVars)
		if err != nil {
			lab.Missing(t, "OVMF vars: "+err.Error())
		}
		if err := os.WriteFile(vars, b, 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, "-machine", "q35",
			"-drive", "if=pflash,format=raw,readonly=on,file="+OVMFCode,
			"-drive", "if=pflash,format=raw,file="+vars)
	}
	args = append(args, o.Args...)
	ctx, cancel := context.WithTimeout(context.Background(), o.Timeout)
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64", args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start qemu: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		cancel()
		_ = cmd.Process.Kill()
		<-done
	})
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			done <- err // let Cleanup's receive finish
			out, _ := os.ReadFile(logPath)
			if strings.Contains(string(out), o.Marker) {
				return string(out)
			}
			t.Fatalf("qemu exited (%v) before marker %q\nstderr: %s\nconsole:\n%s", err, o.Marker, stderr.String(), tail(out))
		case <-ctx.Done():
			// The context killed qemu: wait for it, so stderr is complete
			// and no longer written.
			err := <-done
			done <- err
			out, _ := os.ReadFile(logPath)
			if strings.Contains(string(out), o.Marker) {
				return string(out)
			}
			t.Fatalf("no marker %q within %v\nstderr: %s\nconsole:\n%s", o.Marker, o.Timeout, stderr.String(), tail(out))
		case <-tick.C:
			out, _ := os.ReadFile(logPath)
			if strings.Contains(string(out), o.Marker) {
				return string(out)
			}
		}
	}
}

func tail(b []byte) string {
	const n = 4000
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
