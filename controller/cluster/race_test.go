package cluster

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	sdk "github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go"

	"ironbark/controller"
	"ironbark/controller/ec2"
	"ironbark/controller/ec2/ec2test"
	"ironbark/internal/nodeapi"
	"ironbark/internal/store"
	"ironbark/internal/store/storetest"
)

// rendezvousLedger holds the first usage read (what placement decides
// on) until the other controller's request has reached the same point: its
// own read, or a wait on the store's placement lock (a PostgreSQL advisory
// lock not yet granted). Without a lock in the database both controllers
// read the same free core.
type rendezvousLedger struct {
	InstanceLedger
	db      *store.DB
	once    sync.Once
	arrived chan struct{} // closed after this controller's first read
	other   chan struct{}
}

func (l *rendezvousLedger) Usage(ctx context.Context) (controller.NodeUsages, error) {
	u, err := l.InstanceLedger.Usage(ctx)
	first := false
	l.once.Do(func() { first = true; close(l.arrived) })
	for first {
		select {
		case <-l.other:
			return u, err
		case <-ctx.Done():
			return controller.NodeUsages{}, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
		var waiting int
		if err := l.db.QueryRow(ctx, `SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted`).Scan(&waiting); err != nil {
			return controller.NodeUsages{}, err
		}
		if waiting > 0 {
			break
		}
	}
	return u, err
}

// serveEC2 serves cloud's EC2 API (its token key in db) on a test server
// and returns a client signing as account.
func serveEC2(t *testing.T, db *store.DB, cloud *controller.Cloud, account controller.Account) *sdk.Client {
	t.Helper()
	key, err := controller.TokenKey(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(ec2.NewServer(ec2.Config{Handler: cloud, Credentials: cloud,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), TokenKey: key}))
	t.Cleanup(srv.Close)
	return ec2test.Client(srv.URL, account.AccessKey, account.SecretKey)
}

// Two controllers on one PostgreSQL race for a node's last core: one wins,
// the other answers InsufficientInstanceCapacity, and the node never holds
// more than it has.
func TestTwoControllersRaceForLastCore(t *testing.T) {
	db := storetest.Postgres(t, controller.Migrations())
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	admin, image := adminAndImage(t, db, "race")
	first := newService(t, db, newMemLedger())
	if err := first.AddCluster(ctx, "c1", "GREEDY"); err != nil {
		t.Fatal(err)
	}
	addNode(t, first, "c1", nodeapi.Capacity{Cores: 1, MemoryMiB: 1024, DiskGiB: 20})

	arrived := []chan struct{}{make(chan struct{}), make(chan struct{})}
	clients := make([]*sdk.Client, 2)
	for i := range clients {
		h, err := store.Open(ctx, db.URL()) // each controller its own pool, as separate processes
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { h.Close() })
		h.UseKeyFile(db.KeyFile()) // the controllers share the key file
		if err := h.Migrate(ctx, controller.Migrations()); err != nil {
			t.Fatal(err)
		}
		cloud, err := controller.New(controller.Config{Region: "ironbark", Endpoint: "http://test/"}, h, nil, log)
		if err != nil {
			t.Fatal(err)
		}
		svc := newService(t, h, &rendezvousLedger{InstanceLedger: cloud, db: h, arrived: arrived[i], other: arrived[1-i]})
		cloud.SetPlacer(svc.Placer())
		clients[i] = serveEC2(t, h, cloud, admin)
	}

	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = c.RunInstances(ctx, &sdk.RunInstancesInput{ImageId: aws.String(image),
				InstanceType: types.InstanceType("m1.small"), MinCount: aws.Int32(1), MaxCount: aws.Int32(1)})
		}()
	}
	wg.Wait()
	won := 0
	for _, err := range errs {
		var ae smithy.APIError
		switch {
		case err == nil:
			won++
		case errors.As(err, &ae) && ae.ErrorCode() == "InsufficientInstanceCapacity":
		default:
			t.Errorf("run-instances: %v", err)
		}
	}
	var live int
	if err := db.QueryRow(ctx, `SELECT COUNT(*) FROM instances WHERE state <> 'terminated'`).Scan(&live); err != nil {
		t.Fatal(err)
	}
	if won != 1 || live != 1 {
		t.Fatalf("two controllers raced for one core: %d launches succeeded, %d instances live; want 1 and 1", won, live)
	}
}
