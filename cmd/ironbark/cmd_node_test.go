package main

import (
	"context"
	"strings"
	"testing"

	"ironbark/internal/nodeapi"
)

func TestClusterAndTokenCommands(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	run := func(args ...string) string {
		return capture(t, func() error { return dispatch(ctx, commands(), append(args, "--data-dir", dir)) })
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
