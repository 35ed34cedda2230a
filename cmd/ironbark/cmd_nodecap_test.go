package main

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"ironbark/controller/cluster"
	"ironbark/controller/cluster/clustertest"
	"ironbark/internal/datadir"
	"ironbark/internal/nodeapi"
	"ironbark/internal/pki"
)

// TestNodeReviewCommands: a node that declares more than its cluster allows
// shows up as new in node list with what it declares; the operator's limit
// and approval decide what it offers.
func TestNodeReviewCommands(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	ib := func(args ...string) string { return mustRun(t, append(args, "--data-dir", dir)...) }
	ib("cluster", "add", "c1")
	db := dataDirStore(t, dir)
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
	out := ib("node", "list")
	if !regexp.MustCompile(`(?m)^` + resp.NodeID + `\s+c1\s+rogue\s+up\s+512\s.*new, declares cores 100000>512$`).MatchString(out) {
		t.Fatalf("node list does not show the new node capped and flagged:\n%s", out)
	}
	if _, errs, _ := ironbark(t, "cluster", "set-limit", "c1", "--max-cores", "8", "--data-dir", dir); !strings.Contains(errs, "at most 8 cores") {
		t.Fatalf("set-limit: %q", errs)
	}
	if _, errs, _ := ironbark(t, "node", "approve", resp.NodeID, "--data-dir", dir); !strings.Contains(errs, "approved: 8 cores") {
		t.Fatalf("approve: %q", errs)
	}
	out = ib("node", "list")
	if !regexp.MustCompile(`(?m)^` + resp.NodeID + `\s+c1\s+rogue\s+up\s+8\s.*declares cores 100000>8$`).MatchString(out) {
		t.Fatalf("node list after approval within the limit:\n%s", out)
	}
	if _, _, code := ironbark(t, "node", "approve", "node-nope", "--data-dir", dir); code != 1 {
		t.Fatalf("approving an unknown node: exit %d", code)
	}
}

// TestHostCommandsRevokeTokens: set-boot and remove end the host's install
// attempt, and with it its unused enrollment token.
func TestHostCommandsRevokeTokens(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	ib := func(args ...string) string { return mustRun(t, append(args, "--data-dir", dir)...) }
	ib("cluster", "add", "c1")
	ib("host", "add", "--mac", "52:54:00:aa:00:07", "--cluster", "c1")
	db := dataDirStore(t, dir)
	reg, err := cluster.NewRegistry(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := pki.LoadOrCreateCA(datadir.Dir(dir).PKI())
	if err != nil {
		t.Fatal(err)
	}
	for i, cmd := range [][]string{{"host", "set-boot", "compute-0-0", "os"}, {"host", "remove", "compute-0-0"}} {
		if _, err := reg.InstallToken(ctx, ca, cluster.HostBinding{Cluster: "c1", Hostname: "compute-0-0",
			MAC: "52:54:00:aa:00:07", Attempt: fmt.Sprint("a", i)}, time.Hour); err != nil {
			t.Fatal(err)
		}
		ib(cmd...)
		if n, _ := reg.TokenCount(ctx, time.Now()); n != 0 {
			t.Fatalf("%v left %d live tokens", cmd, n)
		}
	}
}
