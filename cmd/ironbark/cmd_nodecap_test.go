package main

import (
	"context"
	"regexp"
	"strings"
	"testing"

	"ironbark/controller"
	"ironbark/controller/cluster"
	"ironbark/controller/cluster/clustertest"
	"ironbark/internal/nodeapi"
	"ironbark/internal/pki"
	"ironbark/internal/store"
)

// TestNodeReviewCommands: a node that declares more than its cluster allows
// shows up as new in node list with what it declares; the operator's limit
// and approval decide what it offers.
func TestNodeReviewCommands(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	ib := func(args ...string) string { return mustRun(t, append(args, "--data-dir", dir)...) }
	ib("cluster", "add", "c1")
	url, err := controller.StoreURL(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	db, err := store.Open(ctx, url)
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
