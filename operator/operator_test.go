package operator_test

import (
	"context"
	"encoding/pem"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"ironbark/controller"
	"ironbark/controller/ec2"
	"ironbark/images/blobstore"
	"ironbark/internal/store"
	"ironbark/operator"
	"ironbark/pxe"
)

// keys is the test's credential store: the administrator's key and an
// ordinary account's.
type keys map[string]struct {
	secret string
	p      ec2.Principal
}

func (k keys) LookupAccessKey(_ context.Context, ak string) (string, ec2.Principal, error) {
	v, ok := k[ak]
	if !ok {
		return "", ec2.Principal{}, ec2.ErrUnknownAccessKey
	}
	return v.secret, v.p, nil
}

// frontend is a frontend's store behind an EC2 endpoint over TLS on
// loopback, with the admin actions, and the admin's credentials dir.
func frontend(t *testing.T) (creds string, local *operator.Local) {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	db, err := store.Open(ctx, filepath.Join(dir, "ironbark.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.Migrate(ctx, append(controller.Migrations(), pxe.Migrations()...)); err != nil {
		t.Fatal(err)
	}
	cat, err := controller.OpenImageCatalog(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	blobs, err := blobstore.Open(filepath.Join(dir, "images"))
	if err != nil {
		t.Fatal(err)
	}
	local, err = operator.NewLocal(ctx, db, cat, blobs, controller.DefaultVMTypes())
	if err != nil {
		t.Fatal(err)
	}
	if err := local.AddCluster(ctx, "c1"); err != nil {
		t.Fatal(err)
	}
	if _, err := pxe.NewHosts(db).Add(ctx, pxe.AddHost{MAC: "52:54:00:00:00:01", Appliance: "compute", Rank: -1, Cluster: "c1", Boot: pxe.BootOS}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewTLSServer(ec2.NewServer(ec2.Config{
		Handler: nil, Admin: operator.Admin{Source: local},
		Credentials: keys{
			"AKADMIN": {"admin-secret", ec2.Principal{AccountID: "000000000001", Admin: true}},
			"AKALICE": {"alice-secret", ec2.Principal{AccountID: "000000000002"}},
		},
	}))
	t.Cleanup(srv.Close)
	creds = t.TempDir()
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	for n, s := range map[string]string{
		"credentials": "[default]\naws_access_key_id = AKADMIN\naws_secret_access_key = admin-secret\n",
		"eucarc":      "export EC2_URL=" + srv.URL + "/\n",
		"ca.pem":      string(ca),
	} {
		if err := os.WriteFile(filepath.Join(creds, n), []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return creds, local
}

// TestRemote: the dashboard's reads and actions over the EC2 endpoint
// with the admin's credentials dir match the frontend's store.
func TestRemote(t *testing.T) {
	ctx := context.Background()
	dir, local := frontend(t)
	c, err := operator.LoadCredentials(dir)
	if err != nil {
		t.Fatal(err)
	}
	r, err := operator.NewRemote("", c)
	if err != nil {
		t.Fatal(err)
	}
	snap, err := r.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Clusters) != 1 || snap.Clusters[0].Name != "c1" || len(snap.Hosts) != 1 || snap.Hosts[0].Name != "compute-0-0" || snap.Hosts[0].Boot != "os" {
		t.Fatalf("snapshot %+v", snap)
	}
	if err := r.AddCluster(ctx, "c2"); err != nil {
		t.Fatal(err)
	}
	if err := r.Reinstall(ctx, "compute-0-0"); err != nil {
		t.Fatal(err)
	}
	got, err := local.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Clusters) != 2 || got.Clusters[1].Name != "c2" || got.Hosts[0].Boot != "install" {
		t.Fatalf("after the remote actions, the store has %+v", got)
	}
	// Bad input: the frontend's reason, and nothing changed.
	for name, err := range map[string]error{
		"existing cluster": r.AddCluster(ctx, "c2"),
		"no such host":     r.Reinstall(ctx, "compute-9-9"),
		"no such node":     r.SetDrained(ctx, "node-nope", true),
	} {
		if err == nil || !strings.Contains(err.Error(), "InvalidParameterValue") {
			t.Errorf("%s: %v, want InvalidParameterValue", name, err)
		}
	}
	if after, _ := local.Snapshot(ctx); len(after.Clusters) != 2 {
		t.Errorf("clusters after the refused add: %+v", after.Clusters)
	}
}

// TestRemoteRefused: an ordinary account's key and a wrong secret are
// refused; nothing is read.
func TestRemoteRefused(t *testing.T) {
	ctx := context.Background()
	dir, _ := frontend(t)
	c, err := operator.LoadCredentials(dir)
	if err != nil {
		t.Fatal(err)
	}
	alice := c
	alice.AccessKey, alice.SecretKey = "AKALICE", "alice-secret"
	wrong := c
	wrong.SecretKey = "not-the-secret"
	for name, tc := range map[string]struct {
		c    operator.Credentials
		code string
	}{"not the administrator": {alice, "UnauthorizedOperation"}, "wrong secret": {wrong, "SignatureDoesNotMatch"}} {
		r, err := operator.NewRemote("", tc.c)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r.Snapshot(ctx); err == nil || !strings.Contains(err.Error(), tc.code) {
			t.Errorf("%s: %v, want %s", name, err, tc.code)
		}
	}
	// A frontend whose certificate the credentials' CA did not issue.
	other := c
	other.CAPEM = nil
	r, err := operator.NewRemote("", other)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Snapshot(ctx); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("untrusted certificate: %v", err)
	}
	if _, err := operator.LoadCredentials(t.TempDir()); err == nil {
		t.Error("an empty credentials dir was accepted")
	}
}
