package controller

import (
	"context"
	"strings"
	"testing"

	sdk "github.com/aws/aws-sdk-go-v2/service/ec2"

	"ironbark/internal/store"
	"ironbark/internal/store/storetest"
)

// Access keys' secrets are sealed in the store; plaintext rows an older
// version left are sealed at start, and keep signing.
func TestSecretsSealedAtRest(t *testing.T) {
	storetest.Each(t, Migrations(), func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		e := newTestEnv(t, db)
		var stored string
		if err := db.QueryRow(ctx, `SELECT secret FROM access_keys WHERE access_key = ?`, e.alice.AccessKey).Scan(&stored); err != nil {
			t.Fatal(err)
		}
		if stored == e.alice.SecretKey || strings.Contains(stored, e.alice.SecretKey) || !store.IsSealed(stored) {
			t.Fatalf("alice's secret is stored as %q", stored)
		}
		// A row from before sealing.
		if _, err := db.Exec(ctx, `UPDATE access_keys SET secret = ? WHERE access_key = ?`, e.bob.SecretKey, e.bob.AccessKey); err != nil {
			t.Fatal(err)
		}
		n, err := SealSecrets(ctx, db)
		if err != nil || n != 1 {
			t.Fatalf("SealSecrets: %d %v, want 1", n, err)
		}
		if err := db.QueryRow(ctx, `SELECT secret FROM access_keys WHERE access_key = ?`, e.bob.AccessKey).Scan(&stored); err != nil || !store.IsSealed(stored) {
			t.Fatalf("bob's secret after sealing: %q %v", stored, err)
		}
		if n, err := SealSecrets(ctx, db); err != nil || n != 0 {
			t.Fatalf("second SealSecrets: %d %v", n, err)
		}
		e.stop()
		e.start() // a restarted controller: no cached keys
		if _, err := e.client(e.bob).DescribeRegions(ctx, &sdk.DescribeRegionsInput{}); err != nil {
			t.Fatalf("bob signs after his secret was sealed: %v", err)
		}
		// A controller given another key file refuses to start.
		db.UseKeyFile(t.TempDir() + "/wrong.key")
		if _, err := SealSecrets(ctx, db); err == nil || !strings.Contains(err.Error(), "not the one that sealed") {
			t.Fatalf("wrong key file: %v", err)
		}
	})
}
