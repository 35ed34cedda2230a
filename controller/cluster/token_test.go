package cluster

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"ironbark/internal/nodeapi"
	"ironbark/internal/pki"
	"ironbark/internal/store"
	"ironbark/internal/store/storetest"
)

// enrollAs enrolls with the given identity and returns the answer or the
// controller's status error.
func enrollAs(t *testing.T, url, token, host string, macs []string, c nodeapi.Capacity) (nodeapi.EnrollResponse, error) {
	t.Helper()
	_, fp, err := nodeapi.ParseToken(token)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := pki.NewKey()
	csr, _ := pki.CSR(key, host)
	ec := nodeapi.NewClient(url, pki.PinnedTLS(fp))
	defer ec.Close()
	return ec.Enroll(context.Background(), nodeapi.EnrollRequest{Token: token, Hostname: host, CSR: string(csr), MACs: macs, Capacity: c})
}

func wantStatus(t *testing.T, what string, err error, code int) {
	t.Helper()
	var se *nodeapi.StatusError
	if !errors.As(err, &se) || se.Code != code {
		t.Fatalf("%s: %v, want %d", what, err, code)
	}
	t.Logf("%s: %v", what, err)
}

// TestInstallTokens is issue 9's token story on the controller side: one
// token per install attempt, bound to the host's name and MAC, revoked by
// the next attempt, purged when expired; a reinstalled host keeps its node.
func TestInstallTokens(t *testing.T) {
	storetest.Each(t, nil, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		s := newService(t, db, newMemLedger())
		url := serve(t, s)
		if err := s.AddCluster(ctx, "c1", "GREEDY"); err != nil {
			t.Fatal(err)
		}
		const mac = "52:54:00:aa:00:01"
		b := HostBinding{Cluster: "c1", Hostname: "compute-0-0", MAC: mac, Attempt: "a1"}
		tok1, err := s.InstallToken(ctx, s.CA(), b, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		// The same attempt gets no second token.
		if _, err := s.InstallToken(ctx, s.CA(), b, time.Hour); !errors.Is(err, ErrTokenIssued) {
			t.Fatalf("second token for attempt a1: %v, want ErrTokenIssued", err)
		}
		// A new attempt revokes the first attempt's token.
		b.Attempt = "a2"
		tok2, err := s.InstallToken(ctx, s.CA(), b, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		c := nodeapi.Capacity{Cores: 2, MemoryMiB: 2048, DiskGiB: 20}
		_, err = enrollAs(t, url, tok1, "compute-0-0", []string{mac}, c)
		wantStatus(t, "token of a replaced attempt", err, 403)
		// Another identity cannot use the token: wrong name, wrong MAC.
		_, err = enrollAs(t, url, tok2, "rogue", []string{mac}, c)
		wantStatus(t, "token under another name", err, 403)
		_, err = enrollAs(t, url, tok2, "compute-0-0", []string{"52:54:00:66:66:66"}, c)
		wantStatus(t, "token from another MAC", err, 403)
		// The host itself enrolls (its MAC among others, any case).
		r1, err := enrollAs(t, url, tok2, "compute-0-0", []string{"02:00:00:00:00:09", "52:54:00:AA:00:01"}, c)
		if err != nil {
			t.Fatalf("the host's own enrollment: %v", err)
		}
		_, err = enrollAs(t, url, tok2, "compute-0-0", []string{mac}, c)
		wantStatus(t, "token used twice", err, 403)

		// A token bound to the host's address enrolls only from there.
		b.Attempt, b.IP = "a2b", "10.9.9.9"
		tokIP, err := s.InstallToken(ctx, s.CA(), b, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		_, err = enrollAs(t, url, tokIP, "compute-0-0", []string{mac}, c)
		wantStatus(t, "right name and MAC from another address", err, 403)
		b.IP = "127.0.0.1"

		// Reinstalled: a new attempt, a new token, the same node.
		b.Attempt = "a3"
		tok3, err := s.InstallToken(ctx, s.CA(), b, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		r2, err := enrollAs(t, url, tok3, "compute-0-0", []string{mac}, c)
		if err != nil {
			t.Fatal(err)
		}
		nodes, err := s.Nodes(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		if r2.NodeID != r1.NodeID || len(nodes) != 1 {
			t.Fatalf("reinstall: node %s then %s, %d nodes; want one node under one ID", r1.NodeID, r2.NodeID, len(nodes))
		}

		// Ending the attempt revokes; expired tokens are purged.
		b.Attempt = "a4"
		if _, err := s.InstallToken(ctx, s.CA(), b, time.Hour); err != nil {
			t.Fatal(err)
		}
		if n, err := s.RevokeHostTokens(ctx, "compute-0-0"); err != nil || n != 1 {
			t.Fatalf("revoke: %d %v, want 1", n, err)
		}
		if _, err := s.NewToken(ctx, s.CA(), "c1", time.Minute); err != nil {
			t.Fatal(err)
		}
		if n, err := s.PurgeTokens(ctx, time.Now().Add(2*time.Hour)); err != nil || n != 3 {
			t.Fatalf("purge: %d %v, want the 3 tokens left (2 used, 1 unused)", n, err)
		}
		if n, _ := s.TokenCount(ctx, time.Now()); n != 0 {
			t.Fatalf("%d tokens left after purge", n)
		}
	})
}

// TestCapacityBounded: a node declaring 100,000 cores gets the cluster's
// limit, shows up as new, and cannot grow by heartbeat.
func TestCapacityBounded(t *testing.T) {
	storetest.Each(t, nil, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		s := newService(t, db, newMemLedger())
		url := serve(t, s)
		if err := s.AddCluster(ctx, "c1", "GREEDY"); err != nil {
			t.Fatal(err)
		}
		tok, _ := s.NewToken(ctx, s.CA(), "c1", time.Hour)
		r, err := enrollAs(t, url, tok, "big", nil, nodeapi.Capacity{Cores: 100000, MemoryMiB: 1 << 40, DiskGiB: 10})
		if err != nil {
			t.Fatal(err)
		}
		n, err := s.Node(ctx, r.NodeID)
		if err != nil {
			t.Fatal(err)
		}
		if n.Capacity.Cores != DefaultNodeLimit.Cores || n.Capacity.MemoryMiB != DefaultNodeLimit.MemoryMiB || n.Reviewed || n.Declared.Cores != 100000 {
			t.Fatalf("node declaring 100000 cores: %+v, want the default limit and unreviewed", n)
		}
		// The operator's limit applies at once, and to later heartbeats.
		if err := s.SetNodeLimit(ctx, "c1", nodeapi.Capacity{Cores: 16}); err != nil {
			t.Fatal(err)
		}
		n, _ = s.Node(ctx, r.NodeID)
		if n.Capacity.Cores != 16 {
			t.Fatalf("after the limit: %d cores, want 16", n.Capacity.Cores)
		}
		if _, err := s.heartbeat(ctx, n, true, n.Hostname, "", nodeapi.Capacity{Cores: 200000, MemoryMiB: 1 << 40, DiskGiB: 10}, time.Now(), nil); err != nil {
			t.Fatal(err)
		}
		if n, err = s.ApproveNode(ctx, r.NodeID); err != nil || n.Capacity.Cores != 16 || !n.Reviewed {
			t.Fatalf("approved: %+v %v, want 16 cores (the limit)", n, err)
		}
		// Shrinking is taken at once, without approval.
		if _, err := s.heartbeat(ctx, n, true, n.Hostname, "", nodeapi.Capacity{Cores: 4, MemoryMiB: 1024, DiskGiB: 10}, time.Now(), nil); err != nil {
			t.Fatal(err)
		}
		if n, _ = s.Node(ctx, r.NodeID); n.Capacity.Cores != 4 || n.Pending() {
			t.Fatalf("after shrinking: %+v", n)
		}
		// A node that enrolled before its hypervisor answered (no
		// capacity) counts its first report as what it enrolled with.
		tok2, _ := s.NewToken(ctx, s.CA(), "c1", time.Hour)
		r2, err := enrollAs(t, url, tok2, "slow", nil, nodeapi.Capacity{})
		if err != nil {
			t.Fatal(err)
		}
		n2, _ := s.Node(ctx, r2.NodeID)
		if _, err := s.heartbeat(ctx, n2, true, n2.Hostname, "", nodeapi.Capacity{Cores: 4, MemoryMiB: 1024, DiskGiB: 10}, time.Now(), nil); err != nil {
			t.Fatal(err)
		}
		if n2, _ = s.Node(ctx, r2.NodeID); n2.Capacity.Cores != 4 || n2.Pending() || n2.Reviewed {
			t.Fatalf("first report after enrolling without capacity: %+v", n2)
		}
		// A report without cores or memory (the agent restarted and its
		// hypervisor is not answering yet) is no report: what the node
		// declared stands.
		for _, c := range []nodeapi.Capacity{{}, {DiskGiB: 10}, {Cores: 4, DiskGiB: 10}} {
			if _, err := s.heartbeat(ctx, n2, true, n2.Hostname, "", c, time.Now(), nil); err != nil {
				t.Fatal(err)
			}
			if n2, _ = s.Node(ctx, r2.NodeID); n2.Capacity.Cores != 4 || n2.Capacity.MemoryMiB != 1024 || n2.Declared.Cores != 4 {
				t.Fatalf("after reporting %+v: %+v", c, n2)
			}
		}
		// Growth after that first report waits for the operator.
		if _, err := s.heartbeat(ctx, n2, true, n2.Hostname, "", nodeapi.Capacity{Cores: 8, MemoryMiB: 1024, DiskGiB: 10}, time.Now(), nil); err != nil {
			t.Fatal(err)
		}
		if n2, _ = s.Node(ctx, r2.NodeID); n2.Capacity.Cores != 4 || !n2.Pending() {
			t.Fatalf("growing after the first report: %+v, want 4 cores and pending", n2)
		}
		// A node that enrolled with a disk but no cores or memory has not
		// declared either: its first full report is what it enrolled with.
		tok3, _ := s.NewToken(ctx, s.CA(), "c1", time.Hour)
		r3, err := enrollAs(t, url, tok3, "half", nil, nodeapi.Capacity{DiskGiB: 10})
		if err != nil {
			t.Fatal(err)
		}
		n3, _ := s.Node(ctx, r3.NodeID)
		if _, err := s.heartbeat(ctx, n3, true, n3.Hostname, "", nodeapi.Capacity{Cores: 2, MemoryMiB: 2048, DiskGiB: 10}, time.Now(), nil); err != nil {
			t.Fatal(err)
		}
		if n3, _ = s.Node(ctx, r3.NodeID); n3.Capacity.Cores != 2 || n3.Capacity.MemoryMiB != 2048 || n3.Pending() {
			t.Fatalf("first full report after enrolling with a disk only: %+v", n3)
		}
	})
}

// TestEnrollServerFault: a fault on the controller is a 500 without its
// internal text, so the agent retries; a bad request stays a 4xx.
func TestEnrollServerFault(t *testing.T) {
	storetest.Each(t, nil, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		s := newService(t, db, newMemLedger())
		url := serve(t, s)
		if err := s.AddCluster(ctx, "c1", "GREEDY"); err != nil {
			t.Fatal(err)
		}
		tok, _ := s.NewToken(ctx, s.CA(), "c1", time.Hour)
		_, fp, _ := nodeapi.ParseToken(tok)
		ec := nodeapi.NewClient(url, pki.PinnedTLS(fp))
		defer ec.Close()
		_, err := ec.Enroll(ctx, nodeapi.EnrollRequest{Token: tok, Hostname: "h", CSR: "not a CSR"})
		wantStatus(t, "bad CSR", err, 400)
		if _, err := db.Exec(ctx, `DROP TABLE nodes`); err != nil {
			t.Fatal(err)
		}
		_, err = enrollAs(t, url, tok, "h", nil, nodeapi.Capacity{Cores: 1})
		wantStatus(t, "enroll with the nodes table gone", err, 500)
		var se *nodeapi.StatusError
		if errors.As(err, &se) && (strings.Contains(se.Message, "nodes") || strings.Contains(se.Message, "SQL")) {
			t.Fatalf("500 leaks the internal error: %q", se.Message)
		}
	})
}
