package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"ironbark/internal/store"
	"ironbark/operator"
	"ironbark/pxe"
)

// The dashboard's source reads and changes a real data dir: clusters,
// hosts, images; add a cluster, reinstall a host, drain (unknown node).
func TestDashboardLocalSource(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	var out, errOut bytes.Buffer
	if err := run(ctx, []string{"cluster", "add", "c1", "--data-dir", dir}, &out, &errOut); err != nil {
		t.Fatalf("%v %s", err, errOut.String())
	}
	if err := run(ctx, []string{"host", "add", "--mac", "52:54:00:1b:00:01", "--cluster", "c1", "--data-dir", dir}, &out, &errOut); err != nil {
		t.Fatalf("%v %s", err, errOut.String())
	}
	e := &env{dataDir: dir, stdout: &out, stderr: &errOut}
	defer e.close()
	src, err := openLocalSource(ctx, e)
	if err != nil {
		t.Fatal(err)
	}
	snap, err := src.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Clusters) != 1 || snap.Clusters[0].Name != "c1" || len(snap.Hosts) != 1 || snap.Hosts[0].MAC != "52:54:00:1b:00:01" {
		t.Fatalf("snapshot %+v", snap)
	}
	if err := src.AddCluster(ctx, "c2"); err != nil {
		t.Fatal(err)
	}
	h := snap.Hosts[0].Name
	if err := src.Reinstall(ctx, h); err != nil {
		t.Fatal(err)
	}
	snap, _ = src.Snapshot(ctx)
	if len(snap.Clusters) != 2 || snap.Hosts[0].Boot != string(pxe.BootInstall) {
		t.Fatalf("after actions %+v", snap)
	}
	if err := src.SetDrained(ctx, "node-nope", true); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("drain unknown node: %v", err)
	}
}

// The remote dashboard against a running controller: its EC2 endpoint
// answers the administrator's actions with the data dir's snapshot and
// makes the changes there; without --credentials the command line is
// wrong (exit 2).
func TestDashboardRemote(t *testing.T) {
	ctx := context.Background()
	dir, endpoint := startController(t)
	var out, errOut bytes.Buffer
	if err := run(ctx, []string{"cluster", "add", "c1", "--data-dir", dir}, &out, &errOut); err != nil {
		t.Fatalf("%v %s", err, errOut.String())
	}
	c, err := operator.LoadCredentials(filepath.Join(dir, "credentials", "admin"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := operator.NewRemote(endpoint, c)
	if err != nil {
		t.Fatal(err)
	}
	snap, err := r.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Clusters) != 1 || snap.Clusters[0].Name != "c1" {
		t.Fatalf("snapshot %+v", snap)
	}
	if err := r.AddCluster(ctx, "c2"); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if err := run(ctx, []string{"cluster", "list", "--data-dir", dir}, &out, &errOut); err != nil || !strings.Contains(out.String(), "c2 ") {
		t.Fatalf("cluster list after the remote add: %v\n%s", err, out.String())
	}
	if code := exitCode(run(ctx, []string{"tui", "--endpoint", endpoint}, &out, &errOut), io.Discard); code != 2 {
		t.Errorf("tui --endpoint without --credentials: exit %d, want 2", code)
	}
}
