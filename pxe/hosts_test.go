package pxe

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"ironbark/internal/store"
	"ironbark/internal/store/storetest"
)

func TestDiscoveryNamesHosts(t *testing.T) {
	storetest.Each(t, Migrations(), func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		hosts := NewHosts(db)
		d := NewDiscovery(db, hosts)
		next := 10
		assign := func(context.Context) (string, error) { next++; return fmt.Sprintf("10.1.0.%d", next), nil }
		if _, _, err := d.Discover(ctx, "52:54:00:00:00:01", assign); !errors.Is(err, ErrHostNotFound) {
			t.Fatalf("unknown MAC with discovery off: %v, want ErrHostNotFound", err)
		}
		s, err := d.Start(ctx, "compute", "c1", 2, 0)
		if err != nil {
			t.Fatal(err)
		}
		for i, mac := range []string{"52:54:00:00:00:01", "52-54-00-00-00-02", "52:54:00:00:00:01"} {
			h, isNew, err := d.Discover(ctx, mac, assign)
			if err != nil {
				t.Fatal(err)
			}
			wantName := []string{"compute-2-0", "compute-2-1", "compute-2-0"}[i]
			if h.Name != wantName || isNew != (i < 2) || h.Cluster != "c1" || h.Boot != BootInstall {
				t.Fatalf("discover %s: %+v new=%v, want %s new=%v", mac, h, isNew, wantName, i < 2)
			}
		}
		if _, err := d.Start(ctx, "compute", "c1", 0, 0); !errors.Is(err, ErrDiscoveryActive) {
			t.Fatalf("second session: %v, want ErrDiscoveryActive", err)
		}
		if err := d.Beat(ctx, s); err != nil {
			t.Fatal(err)
		}
		// A host added by hand while the session runs is not one of its
		// discoveries.
		if _, err := hosts.Add(ctx, AddHost{MAC: "52:54:00:00:00:09", Appliance: "compute", Rack: 2, Rank: -1, Cluster: "c1"}); err != nil {
			t.Fatal(err)
		}
		got, err := d.Since(ctx, s)
		if err != nil || len(got) != 2 || got[0].Name != "compute-2-0" || got[1].Name != "compute-2-1" {
			t.Fatalf("since: %v %v, want compute-2-0 and compute-2-1", got, err)
		}
		// The discover process died: its session is stale and replaced.
		d.alive = func(int) bool { return false }
		if _, ok, _ := d.Active(ctx); ok {
			t.Fatal("session of a dead process is still active")
		}
		s2, err := d.Start(ctx, "compute", "c1", 0, 0)
		if err != nil {
			t.Fatalf("replace stale session: %v", err)
		}
		d.alive = pidAlive
		// A session from another machine without heartbeats goes stale by time.
		d.now = func() time.Time { return time.Now().Add(2 * StaleAfter) }
		if _, ok, _ := d.Active(ctx); ok {
			t.Fatal("session without heartbeat is still active")
		}
		d.now = time.Now
		h, _, err := d.Discover(ctx, "52:54:00:00:00:03", assign)
		if err != nil || h.Name != "compute-0-0" {
			t.Fatalf("rack 0: %+v %v", h, err)
		}
		if err := d.Stop(ctx, s2); err != nil {
			t.Fatal(err)
		}
		if _, _, err := d.Discover(ctx, "52:54:00:00:00:04", assign); !errors.Is(err, ErrHostNotFound) {
			t.Fatalf("after stop: %v", err)
		}
	})
}

func TestHostCommands(t *testing.T) {
	storetest.Each(t, Migrations(), func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		hs := NewHosts(db)
		h, err := hs.Add(ctx, AddHost{MAC: "52:54:00:AA:00:01", Appliance: "compute", Rank: -1, IP: "10.1.0.10"})
		if err != nil || h.Name != "compute-0-0" || h.MAC != "52:54:00:aa:00:01" {
			t.Fatalf("add: %+v %v", h, err)
		}
		for _, bad := range []AddHost{
			{MAC: "52:54:00:aa:00:01", Appliance: "compute", Rank: -1},                  // same MAC
			{MAC: "52:54:00:aa:00:02", Appliance: "compute", Rank: 0},                   // same rank
			{MAC: "52:54:00:aa:00:03", Appliance: "compute", Rank: -1, IP: "10.1.0.10"}, // same IP
		} {
			if _, err := hs.Add(ctx, bad); !errors.Is(err, ErrHostExists) {
				t.Fatalf("add %+v: %v, want ErrHostExists", bad, err)
			}
		}
		for _, bad := range []AddHost{
			{MAC: "nope", Appliance: "compute"},
			{MAC: "52:54:00:aa:00:04", Appliance: "Compute!"},
			{MAC: "52:54:00:aa:00:04", Appliance: "compute", IP: "fe80::1"},
		} {
			if _, err := hs.Add(ctx, bad); err == nil || errors.Is(err, ErrHostExists) {
				t.Fatalf("add %+v: %v, want a validation error", bad, err)
			}
		}
		if err := hs.SetBoot(ctx, "compute-0-0", BootOS); err != nil {
			t.Fatal(err)
		}
		if err := hs.SetBoot(ctx, "compute-9-9", BootOS); !errors.Is(err, ErrHostNotFound) {
			t.Fatalf("set-boot unknown: %v", err)
		}
		if _, err := ParseBootAction("reinstall"); err == nil {
			t.Fatal("bad boot action accepted")
		}
		if err := hs.Remove(ctx, "compute-0-0"); err != nil {
			t.Fatal(err)
		}
		if err := hs.Remove(ctx, "compute-0-0"); !errors.Is(err, ErrHostNotFound) {
			t.Fatalf("remove twice: %v", err)
		}
	})
}

func TestInstallReports(t *testing.T) {
	storetest.Each(t, Migrations(), func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		hs := NewHosts(db)
		if _, err := hs.Add(ctx, AddHost{MAC: "52:54:00:aa:00:01", Appliance: "compute", Rank: -1}); err != nil {
			t.Fatal(err)
		}
		if err := hs.StartInstall(ctx, "compute-0-0", "a1"); err != nil {
			t.Fatal(err)
		}
		if err := hs.Report(ctx, "compute-0-0", "a1", "running", 40, "writing image", ""); err != nil {
			t.Fatal(err)
		}
		// The node vanished and came back: a new attempt; the old one's
		// reports no longer count.
		if err := hs.StartInstall(ctx, "compute-0-0", "a2"); err != nil {
			t.Fatal(err)
		}
		if err := hs.Report(ctx, "compute-0-0", "a1", "done", 100, "", ""); !errors.Is(err, ErrStaleAttempt) {
			t.Fatalf("stale report: %v", err)
		}
		if err := hs.Report(ctx, "compute-0-0", "a2", "failed", 50, "writing image", "disk too small"); err != nil {
			t.Fatal(err)
		}
		h, _ := hs.Get(ctx, "compute-0-0")
		if h.Boot != BootInstall || h.InstallState != InstallFailed || h.InstallError != "disk too small" {
			t.Fatalf("after failure: %+v", h)
		}
		if err := hs.StartInstall(ctx, "compute-0-0", "a3"); err != nil {
			t.Fatal(err)
		}
		if err := hs.Report(ctx, "compute-0-0", "a3", "done", 100, "installed", ""); err != nil {
			t.Fatal(err)
		}
		h, _ = hs.Get(ctx, "compute-0-0")
		if h.Boot != BootOS || h.InstallState != InstallInstalled || h.Status() != "installed" {
			t.Fatalf("after done: %+v", h)
		}
		// Boot action os: no install attempt can start.
		if err := hs.StartInstall(ctx, "compute-0-0", "a4"); err == nil {
			t.Fatal("install started with boot action os")
		}
	})
}

func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }

// TestDiscoveryCap: a session admits --max hosts, each with an address, and
// counts the MACs it refused; a refused MAC leaves nothing behind.
func TestDiscoveryCap(t *testing.T) {
	storetest.Each(t, Migrations(), func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		hosts := NewHosts(db)
		d := NewDiscovery(db, hosts)
		if _, err := d.Start(ctx, "compute", "c1", 0, 3); err != nil {
			t.Fatal(err)
		}
		next := 0
		assign := func(context.Context) (string, error) {
			next++
			if next > 4 {
				return "", errors.New("pool exhausted")
			}
			return fmt.Sprintf("10.1.0.%d", next), nil
		}
		for i := range 10 {
			_, _, err := d.Discover(ctx, fmt.Sprintf("52:54:00:00:01:%02x", i), assign)
			if (i < 3) != (err == nil) || (i >= 3 && !errors.Is(err, ErrRefused)) {
				t.Fatalf("MAC %d: %v", i, err)
			}
		}
		hs, _ := hosts.List(ctx)
		if len(hs) != 3 {
			t.Fatalf("%d hosts, want the cap of 3", len(hs))
		}
		for _, h := range hs {
			if h.IP == "" {
				t.Fatalf("host %s without an address", h.Name)
			}
		}
		s, _, _ := d.Active(ctx)
		if s.Admitted != 3 || s.Refused != 7 || !strings.Contains(s.LastRefused, "cap of 3") {
			t.Fatalf("session %+v, want 3 admitted, 7 refused", s)
		}
		// No address: refused, no host.
		d2 := NewDiscovery(db, hosts)
		_ = d.Stop(ctx, s)
		if _, err := d2.Start(ctx, "compute", "c1", 1, 0); err != nil {
			t.Fatal(err)
		}
		next = 4 // the pool is used up
		if _, _, err := d2.Discover(ctx, "52:54:00:00:02:01", assign); !errors.Is(err, ErrRefused) {
			t.Fatalf("no address left: %v, want ErrRefused", err)
		}
		if s, _, _ := d2.Active(ctx); s.Refused != 1 || !strings.Contains(s.LastRefused, "pool exhausted") {
			t.Fatalf("session %+v", s)
		}
		if _, err := hosts.ByMAC(ctx, "52:54:00:00:02:01"); !errors.Is(err, ErrHostNotFound) {
			t.Fatalf("refused MAC became a host: %v", err)
		}
	})
}

// TestKeepAlive: the heartbeat keeps a session; once the session is ended
// under it (by another discover replacing it, here by Stop), KeepAlive
// says so; an ended context is a clean stop.
func TestKeepAlive(t *testing.T) {
	db := storetest.SQLite(t, Migrations())
	ctx := context.Background()
	d := NewDiscovery(db, NewHosts(db))
	d.beatEvery = time.Millisecond
	s, err := d.Start(ctx, "compute", "c1", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := d.KeepAlive(cctx, s); err != nil {
		t.Fatalf("cancelled: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- d.KeepAlive(ctx, s) }()
	if err := d.Stop(ctx, s); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err == nil || !strings.Contains(err.Error(), "ended or replaced") {
		t.Fatalf("KeepAlive after the session ended: %v", err)
	}
}
