package rack

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"ironbark/installer/frontend/frontendtest"
)

// The frontend machine: two NICs (eth0 public, eth1 private, as the
// answers say), a virtio disk, enough memory to serve the compute image.
const (
	frontendPublicMAC  = "52:54:00:1f:00:01"
	frontendPrivateMAC = "52:54:00:1f:00:02"
	frontendDisk       = "6G"
	frontendMem        = "1536"
)

// stepFrontend installs the frontend from the ISO onto a blank disk
// (once: the installed disk becomes a cached qcow2 base, never booted),
// then boots the frontend from an overlay of it and waits until its
// services answer.
func (r *runner) stepFrontend(ctx context.Context) error {
	base := filepath.Join(r.cfg.Cache, "frontend-installed-"+r.art.key+".qcow2")
	nics := []nic{{r.pub, frontendPublicMAC}, {r.priv, frontendPrivateMAC}}
	hit, err := r.cachedFile(base, func(tmp string) error {
		if out, err := exec.CommandContext(ctx, "qemu-img", "create", "-q", "-f", "qcow2", tmp, frontendDisk).CombinedOutput(); err != nil {
			return fmt.Errorf("qemu-img create: %v: %s", err, out)
		}
		r.say("  booting the ISO on a blank %s disk: the frontend installer runs unattended (answers on the ISO)", frontendDisk)
		inst := r.startVM("frontend-install", nics, "-m", frontendMem, "-smp", "1", "-no-reboot",
			"-drive", "file="+tmp+",if=virtio,format=qcow2", "-cdrom", r.art.iso, "-boot", "once=d")
		err := inst.await(ctx, "FRONTEND INSTALLED", "FRONTEND INSTALL FAILED")
		if err != nil {
			inst.stop()
			return err
		}
		for _, l := range strings.Split(inst.text(), "\n") {
			if strings.Contains(l, "install step") && strings.Contains(l, "name=") {
				r.cfg.Log.Info("frontend install", "line", strings.TrimSpace(l))
			}
		}
		// -no-reboot: qemu ends at the installer's reboot, leaving an
		// installed disk that never booted.
		select {
		case <-inst.done:
		case <-time.After(2 * time.Minute):
			inst.stop()
			return fmt.Errorf("the installer did not reboot:\n%s", tailLines(inst.text(), 20))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("install: %w", err)
	}
	r.prune()
	if hit {
		r.say("  cached: the installed frontend disk %s (this run boots an overlay of it)", base)
	} else {
		r.say("  installed: %s", base)
	}
	overlay := filepath.Join(r.work, "frontend.qcow2")
	if out, err := exec.CommandContext(ctx, "qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", base, overlay).CombinedOutput(); err != nil {
		return fmt.Errorf("qemu-img create overlay: %v: %s", err, out)
	}
	r.frontend = r.startVM("frontend", nics, "-m", frontendMem, "-smp", "1",
		"-drive", "file="+overlay+",if=virtio,format=qcow2")
	r.say("  frontend booting from its disk (console %s)", r.frontend.console)
	if err := r.awaitFrontend(ctx); err != nil {
		return err
	}
	out, err := r.admin.run(ctx, "ironbark cluster list --data-dir /var/lib/ironbark")
	if err != nil {
		return err
	}
	r.say("  frontend %s up: EC2 on https://%s:8773/, admin access by %s\n%s", r.cfg.frontendAddr(), r.cfg.frontendAddr(), r.admin, indent(out))
	return nil
}

// awaitFrontend waits until the frontend's EC2 port accepts and an admin
// channel answers: SSH with the admin's key (the appliance's sshd), or
// the lab image's shell.
func (r *runner) awaitFrontend(ctx context.Context) error {
	addr := r.cfg.frontendAddr().String()
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		if !r.frontend.running() {
			return fmt.Errorf("the frontend's qemu ended: %s\n%s", r.frontend.proc.Output(), tailLines(r.frontend.text(), 30))
		}
		if txt := r.frontend.text(); strings.Contains(txt, "IRONBARK-FRONTEND-FAILED") {
			return fmt.Errorf("the frontend failed to start:\n%s", tailLines(txt, 30))
		}
		if r.open(ctx, addr, "8773") {
			var ch channel
			if r.open(ctx, addr, "22") {
				ch = &sshChannel{r: r, addr: addr}
			} else if r.open(ctx, addr, frontendtest.LabShellPort) {
				ch = &labShell{r: r, addr: net.JoinHostPort(addr, frontendtest.LabShellPort)}
			}
			if ch != nil {
				if _, err := ch.run(ctx, "true"); err == nil {
					r.admin = ch
					return nil
				} else {
					r.cfg.Log.Debug("admin channel not ready", "channel", ch, "err", err)
				}
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the frontend never answered on %s: %w; console tail:\n%s", addr, ctx.Err(), tailLines(r.frontend.text(), 30))
		case <-t.C:
		}
	}
}

// open reports whether host:port accepts a TCP connection.
func (r *runner) open(ctx context.Context, host, port string) bool {
	c, err := r.dial(ctx, "tcp", net.JoinHostPort(host, port))
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// channel runs shell on the frontend as its administrator.
type channel interface {
	// run runs script with sh and returns its output; a non-zero exit
	// is an error carrying the output.
	run(ctx context.Context, script string) (string, error)
	String() string
}

// sshChannel is root over SSH with the admin's key from the answers.
type sshChannel struct {
	r    *runner
	addr string
}

func (s *sshChannel) String() string { return "ssh root@" + s.addr }

// sshConnectFailed matches what ssh says when it never got to run the
// command: the frontend (one emulated CPU) can be too slow to answer
// while nodes boot beside it.
var sshConnectFailed = regexp.MustCompile(`ssh: connect to host|Connection timed out during banner exchange|kex_exchange_identification|Connection (closed|reset) by`)

func (s *sshChannel) run(ctx context.Context, script string) (string, error) {
	for try := 1; ; try++ {
		cmd := s.r.hostCommand(ctx, "ssh", "-i", s.r.art.sshKey, "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
			"-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=30", "root@"+s.addr, "sh", "-s")
		cmd.Stdin = strings.NewReader(script + "\n")
		out, err := cmd.CombinedOutput()
		if err == nil {
			return string(out), nil
		}
		var ee *exec.ExitError
		if errors.As(err, &ee) && ee.ExitCode() == 255 && sshConnectFailed.Match(out) && try < 6 && ctx.Err() == nil {
			s.r.cfg.Log.Info("ssh to the frontend failed before the command ran; again", "try", try, "out", strings.TrimSpace(string(out)))
			select {
			case <-ctx.Done():
			case <-time.After(5 * time.Second):
			}
			continue
		}
		return string(out), fmt.Errorf("on the frontend: %s: %v: %s", firstLine(script), err, tailLines(string(out), 20))
	}
}

// labShell is the lab frontend image's root shell (it has no sshd):
// the script goes in, its output and exit status come back.
type labShell struct {
	r    *runner
	addr string
}

func (l *labShell) String() string { return "the lab frontend's shell on " + l.addr }

var rcLine = regexp.MustCompile(`(?m)^RACK-RC=(\d+)\s*$`)

func (l *labShell) run(ctx context.Context, script string) (string, error) {
	c, err := l.r.dial(ctx, "tcp", l.addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	if _, err := io.WriteString(c, "{\n"+script+"\n} </dev/null 2>&1\necho RACK-RC=$?\nexit\n"); err != nil {
		return "", err
	}
	var b bytes.Buffer
	_, err = io.Copy(&b, c)
	out := b.String()
	m := rcLine.FindStringSubmatchIndex(out)
	if m == nil {
		if err == nil {
			err = io.ErrUnexpectedEOF
		}
		return out, fmt.Errorf("on the frontend: %s: no exit status (%v): %s", firstLine(script), err, tailLines(out, 20))
	}
	rc, _ := strconv.Atoi(out[m[2]:m[3]])
	out = out[:m[0]]
	if rc != 0 {
		return out, fmt.Errorf("on the frontend: %s: exit status %d: %s", firstLine(script), rc, tailLines(out, 20))
	}
	return out, nil
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return l
}

func indent(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		fmt.Fprintf(&b, "    %s\n", l)
	}
	return strings.TrimRight(b.String(), "\n")
}

// fetch copies a file from the frontend (text files: credentials).
func (r *runner) fetch(ctx context.Context, remote, local string) error {
	out, err := r.admin.run(ctx, "cat "+remote)
	if err != nil {
		return err
	}
	return os.WriteFile(local, []byte(out), 0o600)
}
