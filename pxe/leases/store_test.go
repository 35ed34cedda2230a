package leases

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"ironbark/internal/store"
	"ironbark/internal/store/storetest"
	"ironbark/pxe/dhcp"
)

func mac(i int) net.HardwareAddr {
	return net.HardwareAddr{0x52, 0x54, 0x00, byte(i >> 16), byte(i >> 8), byte(i)}
}

// clock is a settable test clock.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newLeases(t *testing.T, db *store.DB, pool dhcp.Pool, c *clock) *Store {
	t.Helper()
	ls, err := New(context.Background(), db, Config{Pool: pool, Now: c.now})
	if err != nil {
		t.Fatal(err)
	}
	return ls
}

var testPool = dhcp.Pool{Start: netip.MustParseAddr("10.9.0.100"), End: netip.MustParseAddr("10.9.0.103")}

func TestLeaseStore(t *testing.T) {
	storetest.Each(t, Migrations(), func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		c := &clock{t: time.Unix(1_800_000_000, 0)}
		ls := newLeases(t, db, testPool, c)

		// Four clients fill the pool with four distinct addresses.
		seen := map[netip.Addr]bool{}
		for i := range 4 {
			l, err := ls.Offer(ctx, dhcp.OfferRequest{MAC: mac(i)})
			if err != nil {
				t.Fatal(err)
			}
			if seen[l.IP] || !testPool.Contains(l.IP) {
				t.Fatalf("offer %d: %s (seen %v)", i, l.IP, seen)
			}
			seen[l.IP] = true
			if _, err := ls.Ack(ctx, dhcp.AckRequest{MAC: mac(i), IP: l.IP, LeaseTime: time.Hour}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := ls.Offer(ctx, dhcp.OfferRequest{MAC: mac(9)}); !errors.Is(err, dhcp.ErrPoolExhausted) {
			t.Fatalf("fifth client: %v, want pool exhausted", err)
		}
		// A client asking for another's address is refused.
		l0, _ := ls.ByMAC(ctx, mac(0))
		if _, err := ls.Ack(ctx, dhcp.AckRequest{MAC: mac(9), IP: l0.IP, LeaseTime: time.Hour}); !errors.Is(err, dhcp.ErrUnavailable) {
			t.Fatalf("steal: %v", err)
		}
		// The same MAC gets the same address back.
		again, err := ls.Offer(ctx, dhcp.OfferRequest{MAC: mac(0)})
		if err != nil || again.IP != l0.IP {
			t.Fatalf("re-offer: %v %v, want %s", again.IP, err, l0.IP)
		}
		// A released address goes to a newcomer only when needed, and
		// expired leases are reclaimed.
		if err := ls.Release(ctx, mac(1), mustLease(t, ls, mac(1)).IP); err != nil {
			t.Fatal(err)
		}
		c.t = c.t.Add(time.Second)
		l9, err := ls.Offer(ctx, dhcp.OfferRequest{MAC: mac(9)})
		if err != nil {
			t.Fatal(err)
		}
		// Offers are held in memory: a third client is not offered the
		// same address meanwhile.
		if _, err := ls.Offer(ctx, dhcp.OfferRequest{MAC: mac(11)}); !errors.Is(err, dhcp.ErrPoolExhausted) {
			t.Fatalf("address offered twice: %v", err)
		}
		if _, err := ls.Ack(ctx, dhcp.AckRequest{MAC: mac(11), IP: l9.IP, LeaseTime: time.Hour}); !errors.Is(err, dhcp.ErrUnavailable) {
			t.Fatalf("request for an address offered to another: %v", err)
		}
		// Once withdrawn (mac(9) chose another server), the offer frees
		// the address; offered again to mac(9), it is held again.
		ls.Withdraw(mac(9))
		if o, err := ls.Offer(ctx, dhcp.OfferRequest{MAC: mac(12)}); err != nil || o.IP != l9.IP {
			t.Fatalf("after withdraw: %v %v, want %s", o.IP, err, l9.IP)
		}
		ls.Withdraw(mac(12))
		if o, err := ls.Offer(ctx, dhcp.OfferRequest{MAC: mac(9)}); err != nil || o.IP != l9.IP {
			t.Fatalf("re-offer: %v %v", o.IP, err)
		}
		if _, err := ls.Ack(ctx, dhcp.AckRequest{MAC: mac(9), IP: l9.IP, LeaseTime: time.Hour}); err != nil {
			t.Fatal(err)
		}
		if _, err := ls.ByMAC(ctx, mac(1)); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("released lease of the evicted MAC still there: %v", err)
		}
		// Declined addresses are not handed out until the hold passes.
		if err := ls.Decline(ctx, mac(9), l9.IP); err != nil {
			t.Fatal(err)
		}
		if _, err := ls.Offer(ctx, dhcp.OfferRequest{MAC: mac(10), Requested: l9.IP}); !errors.Is(err, dhcp.ErrPoolExhausted) {
			t.Fatalf("declined address handed out: %v", err)
		}
		c.t = c.t.Add(2 * time.Hour)
		if _, err := ls.Offer(ctx, dhcp.OfferRequest{MAC: mac(10)}); err != nil {
			t.Fatalf("after expiry: %v", err)
		}

		// A static address takes over a pool lease of another MAC.
		st, err := ls.Ack(ctx, dhcp.AckRequest{MAC: mac(20), IP: l0.IP, Static: true, Hostname: "compute-0-0"})
		if err != nil || st.State != dhcp.StateStatic {
			t.Fatalf("static: %+v %v", st, err)
		}
		// Pinning keeps an address forever.
		p, err := ls.Pin(ctx, mac(21), "compute-0-1")
		if err != nil || p.State != dhcp.StateStatic {
			t.Fatalf("pin: %+v %v", p, err)
		}
		c.t = c.t.Add(1000 * time.Hour)
		if l, _ := ls.ByMAC(ctx, mac(21)); l.IP != p.IP || l.State != dhcp.StateStatic {
			t.Fatalf("pinned lease changed: %+v", l)
		}
		all, err := ls.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		ips := map[netip.Addr]bool{}
		for _, l := range all {
			if ips[l.IP] {
				t.Fatalf("duplicate %s in %+v", l.IP, all)
			}
			ips[l.IP] = true
		}
	})
}

func mustLease(t *testing.T, ls *Store, m net.HardwareAddr) dhcp.Lease {
	t.Helper()
	l, err := ls.ByMAC(context.Background(), m)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestLeasesSurviveRestart restarts the lease store between the offer
// and the request, as a crashed and restarted server would: on both
// engines with a new LeaseStore on the same database, and on SQLite also
// with the file closed and reopened. Bound leases survive, the offer
// (kept in memory) does not, and whatever the clients do next, no
// address is bound twice.
func TestLeasesSurviveRestart(t *testing.T) {
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	storetest.Each(t, Migrations(), func(t *testing.T, db *store.DB) {
		restartScenario(t, func() *Store { return newLeases(t, db, testPool, c) }, func() {})
	})
	t.Run("sqlite-reopen", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "ironbark.db")
		var db *store.DB
		restartScenario(t, func() *Store {
			var err error
			if db, err = store.Open(context.Background(), path); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			return newLeases(t, db, testPool, c)
		}, func() { db.Close() })
	})
}

func restartScenario(t *testing.T, open func() *Store, crash func()) {
	ctx := context.Background()
	ls := open()
	a, _ := ls.Offer(ctx, dhcp.OfferRequest{MAC: mac(1)})
	if _, err := ls.Ack(ctx, dhcp.AckRequest{MAC: mac(1), IP: a.IP, LeaseTime: time.Hour, Hostname: "n1"}); err != nil {
		t.Fatal(err)
	}
	b, _ := ls.Offer(ctx, dhcp.OfferRequest{MAC: mac(2)})
	crash()

	ls = open()
	if l := mustLease(t, ls, mac(1)); l.IP != a.IP || l.Hostname != "n1" || l.State != dhcp.StateBound {
		t.Fatalf("after restart: %+v", l)
	}
	n, err := ls.Offer(ctx, dhcp.OfferRequest{MAC: mac(3)})
	if err != nil || n.IP == a.IP {
		t.Fatalf("after restart new client got %s (a=%s) %v", n.IP, a.IP, err)
	}
	// The client offered b before the crash requests it now, and the new
	// client requests its offer. If both were offered b, exactly one gets
	// it and the other a NAK (it starts over with DISCOVER).
	err2 := ackErr(ls, mac(2), b.IP)
	err3 := ackErr(ls, mac(3), n.IP)
	for _, err := range []error{err2, err3} {
		if err != nil && !errors.Is(err, dhcp.ErrUnavailable) {
			t.Fatal(err)
		}
	}
	if n.IP == b.IP && (err2 == nil) == (err3 == nil) {
		t.Fatalf("both or neither got %s: %v / %v", b.IP, err2, err3)
	}
	if n.IP != b.IP && (err2 != nil || err3 != nil) {
		t.Fatalf("distinct offers refused: %v / %v", err2, err3)
	}
	all, _ := ls.List(ctx)
	seen := map[netip.Addr]bool{}
	for _, l := range all {
		if seen[l.IP] {
			t.Fatalf("%s bound twice: %+v", l.IP, all)
		}
		seen[l.IP] = true
	}
}

func ackErr(ls *Store, m net.HardwareAddr, ip netip.Addr) error {
	_, err := ls.Ack(context.Background(), dhcp.AckRequest{MAC: m, IP: ip, LeaseTime: time.Hour})
	return err
}

// TestTwoServersOneDatabase: two lease stores (two frontends) share one
// database and hand out addresses concurrently. Clients that get a NAK
// start over, as real ones do; in the end every client has an address
// and no address is bound twice.
func TestTwoServersOneDatabase(t *testing.T) {
	storetest.Each(t, Migrations(), func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		pool := dhcp.Pool{Start: netip.MustParseAddr("10.9.0.10"), End: netip.MustParseAddr("10.9.0.73")}
		c := &clock{t: time.Unix(1_800_000_000, 0)}
		stores := []*Store{newLeases(t, db, pool, c), newLeases(t, db, pool, c)}
		const clients = 48
		errs := make(chan error, clients)
		var wg sync.WaitGroup
		for i := range clients {
			wg.Go(func() {
				ls := stores[i%2]
				var err error
				for try := 0; try < 20; try++ {
					var l dhcp.Lease
					if l, err = ls.Offer(ctx, dhcp.OfferRequest{MAC: mac(i)}); err != nil {
						break
					}
					if _, err = ls.Ack(ctx, dhcp.AckRequest{MAC: mac(i), IP: l.IP, LeaseTime: time.Hour}); !errors.Is(err, dhcp.ErrUnavailable) {
						break
					}
				}
				errs <- err
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Error(err)
			}
		}
		all, err := stores[0].List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		seen := map[netip.Addr]bool{}
		bound := 0
		for _, l := range all {
			if seen[l.IP] {
				t.Fatalf("%s bound twice", l.IP)
			}
			seen[l.IP] = true
			if l.State == dhcp.StateBound {
				bound++
			}
		}
		if bound != clients {
			t.Fatalf("%d bound leases, want %d", bound, clients)
		}
	})
}

// TestAcksCommittedTogether: many clients at once; every ACK returns
// only once its lease is committed (another handle on the database sees
// it at that moment), and no address is bound twice.
func TestAcksCommittedTogether(t *testing.T) {
	storetest.Each(t, Migrations(), func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		pool := dhcp.Pool{Start: netip.MustParseAddr("10.9.1.1"), End: netip.MustParseAddr("10.9.1.200")}
		c := &clock{t: time.Unix(1_800_000_000, 0)}
		ls := newLeases(t, db, pool, c)
		const clients = 150
		errs := make(chan error, clients)
		var wg sync.WaitGroup
		for i := range clients {
			wg.Go(func() {
				o, err := ls.Offer(ctx, dhcp.OfferRequest{MAC: mac(i)})
				if err != nil {
					errs <- err
					return
				}
				a, err := ls.Ack(ctx, dhcp.AckRequest{MAC: mac(i), IP: o.IP, LeaseTime: time.Hour})
				if err != nil {
					errs <- err
					return
				}
				var ip string
				if err := db.QueryRow(ctx, `SELECT ip FROM dhcp_leases WHERE mac = ? AND state = 'bound'`, mac(i).String()).Scan(&ip); err != nil || ip != a.IP.String() {
					errs <- errors.Join(errors.New("ACK returned before its lease was committed"), err)
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		all, err := ls.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		seen := map[netip.Addr]bool{}
		for _, l := range all {
			if seen[l.IP] || l.State != dhcp.StateBound {
				t.Fatalf("%+v twice or not bound", l)
			}
			seen[l.IP] = true
		}
		if len(all) != clients {
			t.Fatalf("%d leases, want %d", len(all), clients)
		}
	})
}

// TestIndexFollowsOtherWriters: offers come from memory, but what another
// server or the CLI wrote reaches them: a refused ACK refreshes the
// address, and a full pool is read again from the database.
func TestIndexFollowsOtherWriters(t *testing.T) {
	storetest.Each(t, Migrations(), func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		pool := dhcp.Pool{Start: netip.MustParseAddr("10.9.2.1"), End: netip.MustParseAddr("10.9.2.2")}
		c := &clock{t: time.Unix(1_800_000_000, 0)}
		a := newLeases(t, db, pool, c)
		b := newLeases(t, db, pool, c) // another server
		first, second := pool.Nth(0), pool.Nth(1)
		if _, err := b.Ack(ctx, dhcp.AckRequest{MAC: mac(1), IP: first, LeaseTime: time.Hour}); err != nil {
			t.Fatal(err)
		}
		// a does not know yet: it offers the first address, and the ACK
		// is refused by the database.
		o, err := a.Offer(ctx, dhcp.OfferRequest{MAC: mac(2)})
		if err != nil || o.IP != first {
			t.Fatalf("offer: %s %v, want %s (from a stale index)", o.IP, err, first)
		}
		if _, err := a.Ack(ctx, dhcp.AckRequest{MAC: mac(2), IP: first, LeaseTime: time.Hour}); !errors.Is(err, dhcp.ErrUnavailable) {
			t.Fatalf("ack of an address another server bound: %v", err)
		}
		// The client starts over and gets the other address.
		a.Withdraw(mac(2))
		if o, err = a.Offer(ctx, dhcp.OfferRequest{MAC: mac(2)}); err != nil || o.IP != second {
			t.Fatalf("second offer: %s %v, want %s", o.IP, err, second)
		}
		if _, err := a.Ack(ctx, dhcp.AckRequest{MAC: mac(2), IP: second, LeaseTime: time.Hour}); err != nil {
			t.Fatal(err)
		}
		// The CLI (another handle) forgets mac(1): a's pool looks full in
		// memory, is read again, and the address goes to a newcomer.
		cli := newLeases(t, db, dhcp.Pool{}, c)
		if err := cli.Forget(ctx, mac(1)); err != nil {
			t.Fatal(err)
		}
		if o, err = a.Offer(ctx, dhcp.OfferRequest{MAC: mac(3)}); err != nil || o.IP != first {
			t.Fatalf("offer after forget: %s %v, want %s", o.IP, err, first)
		}
		if _, err := a.Ack(ctx, dhcp.AckRequest{MAC: mac(3), IP: first, LeaseTime: time.Hour}); err != nil {
			t.Fatal(err)
		}
		if _, err := a.Offer(ctx, dhcp.OfferRequest{MAC: mac(4)}); !errors.Is(err, dhcp.ErrPoolExhausted) {
			t.Fatalf("full pool: %v", err)
		}
		// The CLI forgets mac(2), which a still thinks holds the second
		// address: its renewal writes the row again.
		if err := cli.Forget(ctx, mac(2)); err != nil {
			t.Fatal(err)
		}
		if _, err := a.Ack(ctx, dhcp.AckRequest{MAC: mac(2), IP: second, LeaseTime: 2 * time.Hour}); err != nil {
			t.Fatalf("renewal after forget: %v", err)
		}
		if l := mustLease(t, cli, mac(2)); l.IP != second || l.State != dhcp.StateBound {
			t.Fatalf("after renewal: %+v", l)
		}
		// Another server reclaims an expired lease a still thinks live...
		// and a's expired view of another row is checked before reclaiming.
		c.t = c.t.Add(3 * time.Hour) // every lease has expired
		if _, err := b.Ack(ctx, dhcp.AckRequest{MAC: mac(5), IP: first, LeaseTime: time.Hour}); err != nil {
			t.Fatal(err)
		}
		if _, err := a.Ack(ctx, dhcp.AckRequest{MAC: mac(6), IP: first, LeaseTime: time.Hour}); !errors.Is(err, dhcp.ErrUnavailable) {
			t.Fatalf("reclaim of a lease another server renewed: %v", err)
		}
		if l := mustLease(t, cli, mac(5)); l.IP != first {
			t.Fatalf("the other server's lease: %+v", l)
		}
	})
}

// TestAckedLeasesSurviveCrash: a process acknowledging leases from many
// goroutines at once (group commits on the store's own connection) is
// killed (SIGKILL) in the middle; every lease whose ACK returned before
// the kill is in the database afterwards. The child is this test binary
// run again with leasesCrashChild set.
func TestAckedLeasesSurviveCrash(t *testing.T) {
	if path := os.Getenv(leasesCrashChild); path != "" {
		crashChild(path)
		return
	}
	path := filepath.Join(t.TempDir(), "ironbark.db")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestAckedLeasesSurviveCrash$")
	cmd.Env = append(os.Environ(), leasesCrashChild+"="+path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	// Kill it once it has acknowledged a few hundred leases, while its
	// goroutines go on committing.
	acked := map[string]string{} // MAC -> address
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		m, ip, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			t.Fatalf("child said %q", sc.Text())
		}
		acked[m] = ip
		if len(acked) == 400 {
			if err := cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
		}
	}
	_ = cmd.Wait() // killed
	if len(acked) < 400 {
		t.Fatalf("child acknowledged %d leases before it ended, want 400 (stderr above)", len(acked))
	}
	db, err := store.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ls := newLeases(t, db, crashPool, &clock{t: time.Now()})
	all, err := ls.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]string{}
	seen := map[netip.Addr]bool{}
	for _, l := range all {
		if seen[l.IP] {
			t.Fatalf("%s bound twice", l.IP)
		}
		seen[l.IP] = true
		have[l.MAC.String()] = l.IP.String()
	}
	for m, ip := range acked {
		if have[m] != ip {
			t.Errorf("%s was acknowledged %s before the crash; after it the database has %q", m, ip, have[m])
		}
	}
	t.Logf("%d leases acknowledged before the kill, %d in the database after", len(acked), len(all))
}

const leasesCrashChild = "IRONBARK_LEASES_CRASH_CHILD"

var crashPool = dhcp.Pool{Start: netip.MustParseAddr("10.20.0.1"), End: netip.MustParseAddr("10.20.255.254")}

// crashChild acknowledges new leases from 32 goroutines until killed,
// printing "MAC IP" once each Ack has returned.
func crashChild(path string) {
	ctx := context.Background()
	db, err := store.Open(ctx, path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ls, err := New(ctx, db, Config{Pool: crashPool})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	var mu sync.Mutex
	var next atomic.Int32
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			for {
				i := int(next.Add(1))
				if i >= crashPool.Size() {
					return
				}
				o, err := ls.Offer(ctx, dhcp.OfferRequest{MAC: mac(i)})
				if err == nil {
					_, err = ls.Ack(ctx, dhcp.AckRequest{MAC: mac(i), IP: o.IP, LeaseTime: time.Hour})
				}
				if err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(1)
				}
				mu.Lock()
				fmt.Printf("%s %s\n", mac(i), o.IP)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
}

// TestAckRaces: two clients ask for each address at the same moment
// (no offers, so nothing in memory tells them apart: the batch writes
// both, the table's key refuses the second, and the batch is redone ACK
// by ACK). Exactly one of each pair gets the address, the other a
// refusal, and the table agrees.
func TestAckRaces(t *testing.T) {
	storetest.Each(t, Migrations(), func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		pool := dhcp.Pool{Start: netip.MustParseAddr("10.9.3.1"), End: netip.MustParseAddr("10.9.3.64")}
		ls := newLeases(t, db, pool, &clock{t: time.Unix(1_800_000_000, 0)})
		const addrs = 64
		won := make([][2]bool, addrs)
		var wg sync.WaitGroup
		for i := range addrs {
			for k := range 2 {
				wg.Go(func() {
					m := mac(1000*k + i)
					_, err := ls.Ack(ctx, dhcp.AckRequest{MAC: m, IP: pool.Nth(i), LeaseTime: time.Hour})
					switch {
					case err == nil:
						won[i][k] = true
					case !errors.Is(err, dhcp.ErrUnavailable):
						t.Errorf("%s for %s: %v", pool.Nth(i), m, err)
					}
				})
			}
		}
		wg.Wait()
		for i, w := range won {
			if w[0] == w[1] {
				t.Errorf("%s: won by both or neither (%v)", pool.Nth(i), w)
			}
		}
		all, err := ls.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(all) != addrs {
			t.Fatalf("%d rows, want %d", len(all), addrs)
		}
		for i, l := range all {
			k := 0
			if won[i][1] {
				k = 1
			}
			if l.IP != pool.Nth(i) || l.MAC.String() != mac(1000*k+i).String() || l.State != dhcp.StateBound {
				t.Errorf("row %d: %+v, want %s bound to %s", i, l, pool.Nth(i), mac(1000*k+i))
			}
		}
	})
}
