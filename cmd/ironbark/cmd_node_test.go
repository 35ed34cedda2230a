package main

import (
	"context"
	"io"
	"os"
	"strings"
	"testing"

	"ironbark/internal/nodeapi"
)

// capture runs fn with os.Stdout going to a pipe and returns what it wrote.
func captureStdout(t *testing.T, fn func() error) string {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	old := os.Stdout
	os.Stdout = w
	done := make(chan string)
	go func() { b, _ := io.ReadAll(r); done <- string(b) }()
	err = fn()
	w.Close()
	os.Stdout = old
	out := <-done
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	return out
}

func TestClusterAndTokenCommands(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	run := func(args ...string) string {
		return captureStdout(t, func() error { return dispatch(ctx, commands(), append(args, "--data-dir", dir)) })
	}
	if out := run("cluster", "add", "zone-a", "--policy", "powersave"); !strings.Contains(out, "policy POWERSAVE") {
		t.Fatalf("cluster add: %q", out)
	}
	if out := run("cluster", "list"); !strings.Contains(out, "zone-a") || !strings.Contains(out, "POWERSAVE") {
		t.Fatalf("cluster list: %q", out)
	}
	out := run("node", "token", "--cluster", "zone-a")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if _, _, err := nodeapi.ParseToken(lines[len(lines)-1]); err != nil {
		t.Fatalf("last line of node token is not a token: %v\n%s", err, out)
	}
	if out := run("node", "list"); !strings.HasPrefix(out, "NODE") {
		t.Fatalf("node list: %q", out)
	}
	if err := dispatch(ctx, commands(), []string{"node", "token", "--cluster", "nope", "--data-dir", dir}); err == nil {
		t.Fatal("token for an unknown cluster")
	}
	if err := dispatch(ctx, commands(), []string{"cluster", "add", "zone-a", "--data-dir", dir}); err == nil {
		t.Fatal("cluster added twice")
	}
}
