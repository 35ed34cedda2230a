package cluster

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"ironbark/controller"
	"ironbark/internal/nodeapi"
	"ironbark/internal/pki"
	"ironbark/internal/store"
	"ironbark/internal/store/storetest"
)

// The controller's Cloud is the ledger the frontend runs with.
var (
	_ InstanceLedger   = (*controller.Cloud)(nil)
	_ GroupLedger      = (*controller.Cloud)(nil)
	_ PeerMemberLedger = (*controller.Cloud)(nil)
)

// memLedger is a stand-in for the EC2 side's instance ledger.
type memLedger struct {
	mu       sync.Mutex
	specs    map[string][]nodeapi.InstanceSpec
	observed map[string][]nodeapi.InstanceStatus
	usage    map[string]nodeapi.NodeUsage
	// frozen, when set, is what Usage answers: one whole read, as the
	// controller's cache answers between its reads (benchmarks).
	frozen *controller.NodeUsages
}

// freeze makes Usage answer the usage as it is now, as one read.
func (l *memLedger) freeze() {
	l.mu.Lock()
	defer l.mu.Unlock()
	u := controller.UsageOf(maps.Clone(l.usage))
	l.frozen = &u
}

func newMemLedger() *memLedger {
	return &memLedger{specs: map[string][]nodeapi.InstanceSpec{}, observed: map[string][]nodeapi.InstanceStatus{},
		usage: map[string]nodeapi.NodeUsage{}}
}

func (l *memLedger) DesiredOnNode(_ context.Context, id string) ([]nodeapi.InstanceSpec, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]nodeapi.InstanceSpec(nil), l.specs[id]...), nil
}

func (l *memLedger) Observe(_ context.Context, id string, st []nodeapi.InstanceStatus) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.observed[id] = st
	return nil
}

func (l *memLedger) Usage(context.Context) (controller.NodeUsages, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.frozen != nil {
		return *l.frozen, nil
	}
	return controller.UsageOf(maps.Clone(l.usage)), nil
}

func newService(t *testing.T, db *store.DB, l InstanceLedger) *Service {
	t.Helper()
	s, err := New(context.Background(), Config{DB: db, DataDir: t.TempDir(), Ledger: l,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), DesiredPoll: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// adminAndImage gives a cloud on db its admin account and a stored image
// named name to launch from.
func adminAndImage(t *testing.T, db *store.DB, name string) (controller.Account, string) {
	t.Helper()
	ctx := context.Background()
	admin, err := controller.EnsureAdmin(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(name))
	image, err := controller.RegisterStoredImage(ctx, db, controller.ImageRecord{Name: name, Digest: "sha256:" + hex.EncodeToString(sum[:]), Size: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	return admin, image
}

func serve(t *testing.T, s *Service) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return "https://" + ln.Addr().String()
}

// enrollTLS runs the agent's side of enrollment as host with capacity and
// returns the answer and the node's mTLS configuration.
func enrollTLS(t *testing.T, url, token, host string, capacity nodeapi.Capacity) (nodeapi.EnrollResponse, *tls.Config) {
	t.Helper()
	_, fp, err := nodeapi.ParseToken(token)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := pki.NewKey()
	csr, _ := pki.CSR(key, host)
	ec := nodeapi.NewClient(url, pki.PinnedTLS(fp))
	defer ec.Close()
	resp, err := ec.Enroll(context.Background(), nodeapi.EnrollRequest{Token: token, Hostname: host, CSR: string(csr), Capacity: capacity})
	if err != nil {
		t.Fatalf("enroll: %v", err)
	}
	kp, _ := pki.KeyPEM(key)
	cert, err := tls.X509KeyPair([]byte(resp.Certificate), kp)
	if err != nil {
		t.Fatal(err)
	}
	tc, err := pki.ClientTLS(cert, []byte(resp.CA))
	if err != nil {
		t.Fatal(err)
	}
	return resp, tc
}

// waitForPoll returns once the node's long poll waits on svc.
func waitForPoll(svc *Service, nodeID string) {
	for {
		svc.mu.Lock()
		_, waiting := svc.waiters[nodeID]
		svc.mu.Unlock()
		if waiting {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// enrollNode runs the agent's side of enrollment and returns an mTLS client.
func enrollNode(t *testing.T, url, token string) (*nodeapi.Client, nodeapi.EnrollResponse) {
	t.Helper()
	resp, tc := enrollTLS(t, url, token, "host-a", nodeapi.Capacity{Cores: 4, MemoryMiB: 4096, DiskGiB: 100})
	c := nodeapi.NewClient(url, tc)
	t.Cleanup(c.Close)
	return c, resp
}

func TestEnrollHeartbeatInstances(t *testing.T) {
	storetest.Each(t, nil, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		l := newMemLedger()
		s := newService(t, db, l)
		url := serve(t, s)
		if err := s.AddCluster(ctx, "zone-a", "GREEDY"); err != nil {
			t.Fatal(err)
		}
		if err := s.AddCluster(ctx, "zone-a", "GREEDY"); !errors.Is(err, ErrClusterExists) {
			t.Fatalf("second add: %v, want ErrClusterExists", err)
		}
		if _, err := s.NewToken(ctx, s.CA(), "nope", time.Hour); !errors.Is(err, ErrNoSuchCluster) {
			t.Fatalf("token for unknown cluster: %v", err)
		}
		tok, err := s.NewToken(ctx, s.CA(), "zone-a", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		c, er := enrollNode(t, url, tok)
		if er.Cluster != "zone-a" || er.NodeID == "" {
			t.Fatalf("enroll answer %+v", er)
		}

		// The token is spent.
		_, fp, _ := nodeapi.ParseToken(tok)
		key, _ := pki.NewKey()
		csr, _ := pki.CSR(key, "host-b")
		ec := nodeapi.NewClient(url, pki.PinnedTLS(fp))
		defer ec.Close()
		_, err = ec.Enroll(ctx, nodeapi.EnrollRequest{Token: tok, Hostname: "host-b", CSR: string(csr)})
		var se *nodeapi.StatusError
		if !errors.As(err, &se) || se.Code != 403 {
			t.Fatalf("reused token: %v, want 403", err)
		}
		// A token with the wrong CA fingerprint does not even connect.
		bad := nodeapi.NewClient(url, pki.PinnedTLS("00"+fp[2:]))
		defer bad.Close()
		if _, err := bad.Enroll(ctx, nodeapi.EnrollRequest{Token: tok}); err == nil || errors.As(err, &se) {
			t.Fatalf("enroll against a foreign CA pin: %v, want a TLS failure", err)
		}
		// No client certificate: no heartbeat.
		if _, err := ec.Heartbeat(ctx, nodeapi.HeartbeatRequest{}); !errors.As(err, &se) || se.Code != 401 {
			t.Fatalf("heartbeat without cert: %v, want 401", err)
		}

		st := []nodeapi.InstanceStatus{{InstanceID: "i-1", State: nodeapi.StateRunning}}
		hb, err := c.Heartbeat(ctx, nodeapi.HeartbeatRequest{Hostname: "host-a", Hypervisor: "test:///default",
			Capacity: nodeapi.Capacity{Cores: 8, MemoryMiB: 8192, DiskGiB: 100}, Instances: st, Full: true})
		if err != nil {
			t.Fatal(err)
		}
		if hb.NodeID != er.NodeID || hb.IntervalSeconds != 10 {
			t.Fatalf("heartbeat answer %+v", hb)
		}
		l.mu.Lock()
		got := l.observed[er.NodeID]
		l.mu.Unlock()
		if len(got) != 1 || got[0].InstanceID != "i-1" {
			t.Fatalf("ledger observed %+v", got)
		}
		// The node now says 8 cores: placement keeps counting the 4 it
		// enrolled with until an operator approves the change.
		n, err := s.Node(ctx, er.NodeID)
		if err != nil || n.Capacity.Cores != 4 || n.Declared.Cores != 8 || !n.Pending() || n.Reviewed ||
			n.Hypervisor != "test:///default" || n.State != NodeUp {
			t.Fatalf("node after heartbeat: %+v %v", n, err)
		}
		if n, err = s.ApproveNode(ctx, er.NodeID); err != nil || n.Capacity.Cores != 8 || n.Pending() || !n.Reviewed {
			t.Fatalf("approved node: %+v %v", n, err)
		}

		// Instances: first call answers at once; a waiting call returns
		// when the ledger changes and Notify is called.
		d, err := c.Instances(ctx, "", 0)
		if err != nil || len(d.Instances) != 0 || d.ETag == "" {
			t.Fatalf("instances: %+v %v", d, err)
		}
		got2 := make(chan nodeapi.Desired, 1)
		go func() {
			d2, err := c.Instances(ctx, d.ETag, 30*time.Second)
			if err != nil {
				t.Error(err)
			}
			got2 <- d2
		}()
		time.Sleep(50 * time.Millisecond)
		l.mu.Lock()
		l.specs[er.NodeID] = []nodeapi.InstanceSpec{{InstanceID: "i-2", Desired: nodeapi.StateRunning}}
		l.mu.Unlock()
		s.Notify(er.NodeID)
		d2 := <-got2
		if len(d2.Instances) != 1 || d2.Instances[0].InstanceID != "i-2" || d2.ETag == d.ETag {
			t.Fatalf("waited instances: %+v", d2)
		}

		// A removed node's certificate stops working.
		if err := s.RemoveNode(ctx, er.NodeID); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Heartbeat(ctx, nodeapi.HeartbeatRequest{}); !errors.As(err, &se) || se.Code != 403 {
			t.Fatalf("heartbeat of removed node: %v, want 403", err)
		}
	})
}

func TestExpiredToken(t *testing.T) {
	db := storetest.SQLite(t, nil)
	ctx := context.Background()
	s := newService(t, db, newMemLedger())
	url := serve(t, s)
	if err := s.AddCluster(ctx, "z", "GREEDY"); err != nil {
		t.Fatal(err)
	}
	tok, err := s.NewToken(ctx, s.CA(), "z", -time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_, fp, _ := nodeapi.ParseToken(tok)
	key, _ := pki.NewKey()
	csr, _ := pki.CSR(key, "h")
	ec := nodeapi.NewClient(url, pki.PinnedTLS(fp))
	defer ec.Close()
	_, err = ec.Enroll(ctx, nodeapi.EnrollRequest{Token: tok, Hostname: "h", CSR: string(csr)})
	var se *nodeapi.StatusError
	if !errors.As(err, &se) || se.Code != 403 {
		t.Fatalf("expired token: %v, want 403", err)
	}
}

// addNode enrolls a node directly through the registry.
func addNode(t *testing.T, s *Service, cluster string, c nodeapi.Capacity) string {
	t.Helper()
	ctx := context.Background()
	tok, err := s.NewToken(ctx, s.CA(), cluster, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	n, err := s.enroll(ctx, enrollment{Token: tok, Hostname: "h", Hypervisor: "test:///default", Capacity: c}, s.cfg.Now(), func(string) (string, error) { return "1", nil })
	if err != nil {
		t.Fatal(err)
	}
	return n.ID
}

func TestZonesAndPlace(t *testing.T) {
	storetest.Each(t, nil, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		l := newMemLedger()
		now := time.Now()
		s, err := New(ctx, Config{DB: db, DataDir: t.TempDir(), Ledger: l, Now: func() time.Time { return now },
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		for _, z := range []string{"a", "b", "empty"} {
			if err := s.AddCluster(ctx, z, "GREEDY"); err != nil {
				t.Fatal(err)
			}
		}
		n1 := addNode(t, s, "a", nodeapi.Capacity{Cores: 4, MemoryMiB: 2048, DiskGiB: 40})
		addNode(t, s, "b", nodeapi.Capacity{Cores: 2, MemoryMiB: 1024, DiskGiB: 20})
		l.usage[n1] = nodeapi.NodeUsage{Cores: 1, MemoryMiB: 256, DiskGiB: 5, Instances: 1}

		zones, err := s.Zones(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(zones) != 3 || zones[0].Name != "a" || zones[2].State != ZoneUnavailable || zones[0].State != ZoneAvailable {
			t.Fatalf("zones %+v", zones)
		}
		if zones[0].Max["m1.small"] != 4 || zones[0].Free["m1.small"] != 3 || zones[0].Max["m1.large"] != 2 || zones[0].Free["m1.large"] != 1 {
			t.Fatalf("zone a counts: free %v max %v", zones[0].Free, zones[0].Max)
		}
		small := nodeapi.VMType{Name: "m1.small", Cores: 1, MemoryMiB: 256, DiskGiB: 5}
		z, ids, err := s.Place(ctx, "", small, 3)
		if err != nil || z != "a" || len(ids) != 3 {
			t.Fatalf("place 3 anywhere: %s %v %v", z, ids, err)
		}
		if _, _, err := s.Place(ctx, "b", small, 3); !errors.Is(err, controller.ErrInsufficientCapacity) {
			t.Fatalf("place 3 in b: %v", err)
		}
		if _, _, err := s.Place(ctx, "nowhere", small, 1); !errors.Is(err, controller.ErrNoSuchZone) {
			t.Fatalf("place in unknown zone: %v", err)
		}
		if _, _, err := s.Place(ctx, "empty", small, 1); !errors.Is(err, controller.ErrInsufficientCapacity) {
			t.Fatalf("place in empty zone: %v", err)
		}
		// A cluster added by another process (the CLI) is a zone at
		// once, though placement keeps the cluster list for a while.
		other, err := NewRegistry(ctx, db)
		if err != nil {
			t.Fatal(err)
		}
		if err := other.AddCluster(ctx, "late", "GREEDY"); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.Place(ctx, "late", small, 1); !errors.Is(err, controller.ErrInsufficientCapacity) {
			t.Fatalf("place in a zone added by another registry: %v, want insufficient capacity (it has no nodes)", err)
		}

		// A drained node gets nothing new; undrained, it is back.
		nb, err := s.Nodes(ctx, "b")
		if err != nil || len(nb) != 1 {
			t.Fatalf("nodes of b: %v %v", nb, err)
		}
		if err := s.SetDrained(ctx, nb[0].ID, true); err != nil {
			t.Fatal(err)
		}
		s.invalidate()
		if n, _ := s.Node(ctx, nb[0].ID); !n.Drained {
			t.Fatal("node not drained")
		}
		if _, _, err := s.Place(ctx, "b", small, 1); !errors.Is(err, controller.ErrInsufficientCapacity) {
			t.Fatalf("placed on a drained node: %v", err)
		}
		if err := s.SetDrained(ctx, nb[0].ID, false); err != nil {
			t.Fatal(err)
		}
		s.invalidate()
		if _, _, err := s.Place(ctx, "b", small, 1); err != nil {
			t.Fatalf("undrained node refused: %v", err)
		}
		if err := s.SetDrained(ctx, "node-nope", true); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("drain unknown node: %v", err)
		}

		// Nodes that stop their heartbeats leave the zone.
		now = now.Add(time.Minute)
		ids2, err := s.markDown(ctx, now.Add(-s.cfg.HeartbeatTimeout), nil)
		if err != nil || len(ids2) != 2 {
			t.Fatalf("mark down: %v %v", ids2, err)
		}
		s.invalidate() // as Run does
		zones, _ = s.Zones(ctx)
		if zones[0].State != ZoneUnavailable || zones[0].Free["m1.small"] != 0 {
			t.Fatalf("zone a after timeout: %+v", zones[0])
		}
	})
}

func TestBadRequests(t *testing.T) {
	db := storetest.SQLite(t, nil)
	s := newService(t, db, newMemLedger())
	url := serve(t, s)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: pki.PinnedTLS(s.CA().Fingerprint())}}
	defer hc.CloseIdleConnections()
	post := func(path string, body io.Reader) int {
		resp, err := hc.Post(url+path, "application/json", body)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var e nodeapi.Error
		if err := json.NewDecoder(resp.Body).Decode(&e); err != nil || e.Error == "" {
			t.Fatalf("%s: answer is not a JSON error (%v)", path, err)
		}
		return resp.StatusCode
	}
	for _, tc := range []struct {
		body string
		code int
	}{
		{`not json`, 400},
		{`{"token": "ibt1.x.y"}`, 400}, // no hostname, no csr
		{`{"token": "garbage", "hostname": "h", "csr": "x"}`, 403},
		{`{"token": "ibt1.nosuch.` + strings.Repeat("ab", 32) + `", "hostname": "h", "csr": "x"}`, 403},
	} {
		if got := post(nodeapi.PathEnroll, strings.NewReader(tc.body)); got != tc.code {
			t.Errorf("enroll %q: %d, want %d", tc.body, got, tc.code)
		}
	}
	// A body past the limit is cut off and refused, not read whole.
	huge := io.MultiReader(strings.NewReader(`{"token": "`), io.LimitReader(filler{}, maxBody+1), strings.NewReader(`"}`))
	if got := post(nodeapi.PathEnroll, huge); got != 400 {
		t.Errorf("huge enroll body: %d, want 400", got)
	}
	// Without a client certificate, nothing but enroll answers.
	if got := post(nodeapi.PathHeartbeat, strings.NewReader(`{}`)); got != 401 {
		t.Errorf("heartbeat without certificate: %d", got)
	}
	if err := s.AddCluster(context.Background(), "bad name!", "GREEDY"); err == nil {
		t.Error("cluster name with spaces accepted")
	}
}

type filler struct{}

func (filler) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'a'
	}
	return len(p), nil
}

// A fault on the controller's side during enrollment (here its store is
// gone) answers 500 with no internal detail, so the agent retries; a bad
// CSR is still the caller's 400.
func TestEnrollServerFaultIs5xx(t *testing.T) {
	ctx := context.Background()
	db := storetest.SQLite(t, nil)
	s := newService(t, db, newMemLedger())
	if err := s.AddCluster(ctx, "c1", "GREEDY"); err != nil {
		t.Fatal(err)
	}
	url := serve(t, s)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: pki.PinnedTLS(s.CA().Fingerprint())}}
	defer hc.CloseIdleConnections()
	enroll := func(token, csr string) (int, string) {
		body, _ := json.Marshal(nodeapi.EnrollRequest{Token: token, Hostname: "h", CSR: csr})
		resp, err := hc.Post(url+nodeapi.PathEnroll, "application/json", strings.NewReader(string(body)))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var e nodeapi.Error
		_ = json.NewDecoder(resp.Body).Decode(&e)
		return resp.StatusCode, e.Error
	}
	tok, err := s.NewToken(ctx, s.CA(), "c1", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if code, msg := enroll(tok, "not a csr"); code != http.StatusBadRequest || !strings.Contains(msg, "certificate request") {
		t.Errorf("bad csr: %d %q, want 400 naming the certificate request", code, msg)
	}
	key, _ := pki.NewKey()
	csr, _ := pki.CSR(key, "h")
	db.Close() // the store fails from here on
	code, msg := enroll(tok, string(csr))
	if code != http.StatusInternalServerError {
		t.Fatalf("enroll with the store down: %d %q, want 500", code, msg)
	}
	for _, leak := range []string{"sql", "database", "enroll h"} {
		if strings.Contains(msg, leak) {
			t.Errorf("500 answer leaks internal detail %q: %q", leak, msg)
		}
	}
}
