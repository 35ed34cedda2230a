package lab

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// Terminal is a program running in a detached tmux session of a fixed
// size: a test types into it (SendKeys) and reads the screen as a user
// sees it (Screen), the way an operator at an 80x24 console would.
type Terminal struct {
	socket string
}

// NewTerminal starts shell command cmd in a tmux session of cols x rows;
// the session (and the program) is killed at cleanup.
func NewTerminal(t testing.TB, cols, rows int, cmd string) *Terminal {
	t.Helper()
	Require(t, "tmux")
	term := &Terminal{socket: IfName("ibtmux")}
	out, err := exec.Command("tmux", "-L", term.socket, "-f", "/dev/null", "new-session", "-d", "-s", "t",
		"-x", fmt.Sprint(cols), "-y", fmt.Sprint(rows), cmd).CombinedOutput()
	if err != nil {
		t.Fatalf("tmux new-session: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("tmux", "-L", term.socket, "kill-server").Run() })
	return term
}

// SendKeys types keys: tmux key names (Enter, Tab, Escape, Right, Space,
// C-u) or literal text with the "-l" prefix ("-l:text").
func (term *Terminal) SendKeys(t testing.TB, keys ...string) {
	t.Helper()
	for _, k := range keys {
		args := []string{"-L", term.socket, "send-keys", "-t", "t"}
		if s, ok := strings.CutPrefix(k, "-l:"); ok {
			args = append(args, "-l", s)
		} else {
			args = append(args, k)
		}
		if out, err := exec.Command("tmux", args...).CombinedOutput(); err != nil {
			t.Fatalf("tmux send-keys %q: %v: %s", k, err, out)
		}
	}
}

// Screen is what the terminal shows now.
func (term *Terminal) Screen(t testing.TB) string {
	t.Helper()
	out, err := exec.Command("tmux", "-L", term.socket, "capture-pane", "-p", "-t", "t").CombinedOutput()
	if err != nil {
		t.Fatalf("tmux capture-pane: %v: %s", err, out)
	}
	return string(out)
}

// WaitFor waits until the screen shows all of subs, failing after
// timeout with the screen as it was.
func (term *Terminal) WaitFor(t testing.TB, timeout time.Duration, subs ...string) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		s := term.Screen(t)
		all := true
		for _, sub := range subs {
			all = all && strings.Contains(s, sub)
		}
		if all {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("the terminal never showed %q; it shows:\n%s", subs, s)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
