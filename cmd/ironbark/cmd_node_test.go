package main

import (
	"context"
	"regexp"
	"strings"
	"testing"

	"ironbark/controller/cluster"
	"ironbark/controller/cluster/clustertest"
	"ironbark/internal/nodeapi"
	"ironbark/internal/pki"
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

// TestNodeReviewCommands: a node that declares more than its cluster allows
// shows up as new in node list with what it declares; the operator's limit
// and approval decide what it offers.
func TestNodeReviewCommands(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	run := func(args ...string) string {
		return capture(t, func() error { return dispatch(ctx, commands(), append(args, "--data-dir", dir)) })
	}
	run("cluster", "add", "c1")
	db, err := (&storeFlags{dataDir: dir}).openStore(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctl := clustertest.Start(t, clustertest.NewLedger(), cluster.Config{DB: db, DataDir: dir})
	tok := ctl.Token(t, "c1")
	_, fp, _ := nodeapi.ParseToken(tok)
	key, _ := pki.NewKey()
	csr, _ := pki.CSR(key, "rogue")
	ec := nodeapi.NewClient(ctl.URL, pki.PinnedTLS(fp))
	defer ec.Close()
	resp, err := ec.Enroll(ctx, nodeapi.EnrollRequest{Token: tok, Hostname: "rogue", CSR: string(csr),
		Capacity: nodeapi.Capacity{Cores: 100000, MemoryMiB: 4096, DiskGiB: 10}})
	if err != nil {
		t.Fatal(err)
	}
	out := run("node", "list")
	if !regexp.MustCompile(`(?m)^` + resp.NodeID + `\s+c1\s+rogue\s+up\s+512\s.*new, declares cores 100000>512$`).MatchString(out) {
		t.Fatalf("node list does not show the new node capped and flagged:\n%s", out)
	}
	if out := run("cluster", "set-limit", "c1", "--max-cores", "8"); !strings.Contains(out, "at most 8 cores") {
		t.Fatalf("set-limit: %q", out)
	}
	if out := run("node", "approve", resp.NodeID); !strings.Contains(out, "approved: 8 cores") {
		t.Fatalf("approve: %q", out)
	}
	out = run("node", "list")
	if !regexp.MustCompile(`(?m)^` + resp.NodeID + `\s+c1\s+rogue\s+up\s+8\s.*declares cores 100000>8$`).MatchString(out) {
		t.Fatalf("node list after approval within the limit:\n%s", out)
	}
	if err := dispatch(ctx, commands(), []string{"node", "approve", "node-nope", "--data-dir", dir}); err == nil {
		t.Fatal("approved an unknown node")
	}
}
