package controller

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"net/http/httptest"
	"slices"
	"sort"
	"strings"
	"testing"

	sdk "github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/smithy-go"

	"ironbark/controller/ec2"
	"ironbark/controller/ec2/ec2test"
	"ironbark/internal/nodeapi"
	"ironbark/internal/store"
)

// fixedPlacer is a real, simple placement policy over a fixed node list:
// first fit in list order, zone by zone, reading usage from the ledger.
// It stands in for the cluster side, which has its own tests.
type fixedPlacer struct {
	ledger *Cloud
	nodes  []fixedNode
	types  []nodeapi.VMType
}

type fixedNode struct {
	ID, Zone string
	Cap      nodeapi.Capacity
}

func (p *fixedPlacer) free(ctx context.Context) (map[string]nodeapi.Capacity, error) {
	use, err := p.ledger.Usage(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string]nodeapi.Capacity{}
	for _, n := range p.nodes {
		u := use.Of(n.ID)
		out[n.ID] = nodeapi.Capacity{Cores: n.Cap.Cores - u.Cores, MemoryMiB: n.Cap.MemoryMiB - u.MemoryMiB, DiskGiB: n.Cap.DiskGiB - u.DiskGiB}
	}
	return out, nil
}

func fits(c nodeapi.Capacity, vt nodeapi.VMType) int {
	n := c.Cores / vt.Cores
	n = min(n, c.MemoryMiB/vt.MemoryMiB, c.DiskGiB/vt.DiskGiB)
	return max(n, 0)
}

func (p *fixedPlacer) Zones(ctx context.Context) ([]Zone, error) {
	free, err := p.free(ctx)
	if err != nil {
		return nil, err
	}
	byName := map[string]*Zone{}
	var names []string
	for _, n := range p.nodes {
		z := byName[n.Zone]
		if z == nil {
			z = &Zone{Name: n.Zone, State: "available", Free: map[string]int{}, Max: map[string]int{}}
			byName[n.Zone] = z
			names = append(names, n.Zone)
		}
		for _, vt := range p.types {
			z.Free[vt.Name] += fits(free[n.ID], vt)
			z.Max[vt.Name] += fits(n.Cap, vt)
		}
	}
	sort.Strings(names)
	var out []Zone
	for _, n := range names {
		out = append(out, *byName[n])
	}
	return out, nil
}

func (p *fixedPlacer) Place(ctx context.Context, zone string, vt nodeapi.VMType, n int) (string, []string, error) {
	free, err := p.free(ctx)
	if err != nil {
		return "", nil, err
	}
	zones := map[string]bool{}
	for _, nd := range p.nodes {
		zones[nd.Zone] = true
	}
	if zone != "" && !zones[zone] {
		return "", nil, ErrNoSuchZone
	}
	for _, z := range slices.Sorted(maps.Keys(zones)) {
		if zone != "" && z != zone {
			continue
		}
		var picked []string
		for _, nd := range p.nodes {
			if nd.Zone != z {
				continue
			}
			c := free[nd.ID]
			for fits(c, vt) > 0 && len(picked) < n {
				picked = append(picked, nd.ID)
				c.Cores, c.MemoryMiB, c.DiskGiB = c.Cores-vt.Cores, c.MemoryMiB-vt.MemoryMiB, c.DiskGiB-vt.DiskGiB
			}
		}
		if len(picked) == n {
			return z, picked, nil
		}
	}
	return "", nil, ErrInsufficientCapacity
}

// testEnv is a controller on a real loopback listener with an admin and
// two tenant accounts.
type testEnv struct {
	t                 *testing.T
	db                *store.DB
	cloud             *Cloud
	placer            *fixedPlacer
	srv               *httptest.Server
	admin, alice, bob Account
	image             string // a public machine image owned by the admin
}

func newTestEnv(t *testing.T, db *store.DB) *testEnv {
	t.Helper()
	ctx := context.Background()
	e := &testEnv{t: t, db: db}
	var err error
	if e.admin, err = EnsureAdmin(ctx, db); err != nil {
		t.Fatal(err)
	}
	if e.alice, err = accountFor(ctx, db, "alice"); err != nil {
		t.Fatal(err)
	}
	if e.bob, err = accountFor(ctx, db, "bob"); err != nil {
		t.Fatal(err)
	}
	e.start()
	digest := "sha256:" + strings.Repeat("0f", 32)
	if e.image, err = imageFor(ctx, db, ImageRecord{Name: "debian-12", Digest: digest, Size: 1 << 20, Public: true}); err != nil {
		t.Fatal(err)
	}
	return e
}

func accountFor(ctx context.Context, db *store.DB, name string) (Account, error) {
	a, err := CreateAccount(ctx, db, name, false)
	if errors.Is(err, ErrAccountExists) {
		return LookupAccount(ctx, db, name)
	}
	return a, err
}

func imageFor(ctx context.Context, db *store.DB, r ImageRecord) (string, error) {
	var id string
	err := db.QueryRow(ctx, `SELECT id FROM images WHERE name = ?`, r.Name).Scan(&id)
	if err == nil {
		return id, nil
	}
	return RegisterStoredImage(ctx, db, r)
}

// start builds the Cloud and its server over e.db (again, after stop:
// a controller restart).
func (e *testEnv) start() {
	t := e.t
	ctx := context.Background()
	log := slog.New(slog.DiscardHandler)
	cloud, err := New(Config{Region: "ironbark", Endpoint: "http://test/", PublicAddresses: []string{"198.51.100.0/29"}}, e.db, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	e.placer = &fixedPlacer{ledger: cloud, types: DefaultVMTypes(), nodes: []fixedNode{
		{ID: "node-a1", Zone: "zone-a", Cap: nodeapi.Capacity{Cores: 8, MemoryMiB: 4096, DiskGiB: 100}},
		{ID: "node-a2", Zone: "zone-a", Cap: nodeapi.Capacity{Cores: 8, MemoryMiB: 4096, DiskGiB: 100}},
		{ID: "node-b1", Zone: "zone-b", Cap: nodeapi.Capacity{Cores: 2, MemoryMiB: 1024, DiskGiB: 20}},
	}}
	cloud.SetPlacer(e.placer)
	e.cloud = cloud
	key, err := TokenKey(ctx, e.db)
	if err != nil {
		t.Fatal(err)
	}
	e.srv = httptest.NewServer(ec2.NewServer(ec2.Config{Handler: cloud, Credentials: cloud, Logger: log, TokenKey: key}))
	t.Cleanup(e.srv.Close)
}

func (e *testEnv) stop() { e.srv.Close() }

// client is an aws-sdk-go-v2 EC2 client for an account: one attempt, so
// no retry hides an error (see ec2test.Client).
func (e *testEnv) client(a Account) *sdk.Client {
	return ec2test.Client(e.srv.URL+"/services/compute", a.AccessKey, a.SecretKey)
}

// wantCode fails unless err is an EC2 API error with the code.
func wantCode(t *testing.T, err error, code string) {
	t.Helper()
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		t.Fatalf("want %s, got %v", code, err)
	}
	if ae.ErrorCode() != code {
		t.Fatalf("want %s, got %s: %s", code, ae.ErrorCode(), ae.ErrorMessage())
	}
}

func must[T any](t *testing.T) func(v T, err error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

// observe reports the instances in a state, as their nodes would.
func (e *testEnv) observe(t *testing.T, ids []string, state string) {
	t.Helper()
	for _, id := range ids {
		var node string
		if err := e.db.QueryRow(context.Background(), `SELECT node_id FROM instances WHERE id = ?`, id).Scan(&node); err != nil {
			t.Fatal(err)
		}
		if err := e.cloud.Observe(context.Background(), node, []nodeapi.InstanceStatus{{InstanceID: id, State: state}}); err != nil {
			t.Fatal(err)
		}
	}
}
