package scale

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"ironbark/controller"
	"ironbark/controller/cluster"
	"ironbark/internal/datadir"
	"ironbark/internal/pki"
	"ironbark/internal/store"
)

// Cluster is the one availability zone the bench's nodes join.
const Cluster = "scale"

// Seed is what Prepare made in the store before the controller starts.
type Seed struct {
	Accounts []controller.Account
	Image    string   // a public machine image every account may launch
	Tokens   []string // one enrollment token per node
}

// Prepare readies a data dir and its store for a run: the instance subnet
// (big enough for the run), the cluster, accounts, a public image and one
// enrollment token per node, written straight to the store as the CLI
// would, so setup is not what the bench measures.
func Prepare(ctx context.Context, dataDir, dbURL string, accounts, nodes int, subnet string) (Seed, error) {
	var seed Seed
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return seed, err
	}
	st := controller.Settings{DB: dbURL, InstanceSubnet: subnet}
	if err := controller.SaveSettings(dataDir, st); err != nil {
		return seed, err
	}
	url, err := controller.StoreURL(dataDir, dbURL)
	if err != nil {
		return seed, err
	}
	db, err := store.Open(ctx, url)
	if err != nil {
		return seed, err
	}
	defer db.Close()
	db.UseKeyFile(datadir.Dir(dataDir).SecretKey())
	if err := db.Migrate(ctx, controller.Migrations()); err != nil {
		return seed, err
	}
	reg, err := cluster.NewRegistry(ctx, db)
	if err != nil {
		return seed, err
	}
	if err := reg.AddCluster(ctx, Cluster, "GREEDY"); err != nil {
		return seed, err
	}
	admin, err := controller.EnsureAdmin(ctx, db)
	if err != nil {
		return seed, err
	}
	seed.Image, err = controller.RegisterStoredImage(ctx, db, controller.ImageRecord{Owner: admin.ID, Name: "scale",
		Digest: "sha256:" + strings.Repeat("5c", 32), Size: 1 << 30, Public: true})
	if err != nil {
		return seed, err
	}
	for i := range accounts {
		a, err := controller.CreateAccount(ctx, db, fmt.Sprintf("tenant-%03d", i), false)
		if err != nil {
			return seed, err
		}
		seed.Accounts = append(seed.Accounts, a)
	}
	ca, err := pki.LoadOrCreateCA(datadir.Dir(dataDir).PKI())
	if err != nil {
		return seed, err
	}
	for range nodes {
		tok, err := reg.NewToken(ctx, ca, Cluster, 24*time.Hour)
		if err != nil {
			return seed, err
		}
		seed.Tokens = append(seed.Tokens, tok)
	}
	return seed, nil
}

// pgSize is the size of the PostgreSQL database url names.
func pgSize(ctx context.Context, url string) (int64, error) {
	db, err := store.Open(ctx, url)
	if err != nil {
		return 0, err
	}
	defer db.Close()
	var n int64
	err = db.QueryRow(ctx, `SELECT pg_database_size(current_database())`).Scan(&n)
	return n, err
}
