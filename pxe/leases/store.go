package leases

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"time"

	"ironbark/internal/retry"
	"ironbark/internal/store"
	"ironbark/pxe/dhcp"
)

// Migrations returns the schema of the lease database. IP is the primary
// key, so one address can never be held by two rows, whatever crashes or
// concurrent servers do; a MAC holds at most one row (declined addresses
// are kept with an empty MAC).
func Migrations() []store.Migration {
	return []store.Migration{{
		ID: "pxe-dhcp/0001-leases",
		SQL: `CREATE TABLE dhcp_leases (
			ip TEXT PRIMARY KEY,
			mac TEXT NOT NULL,
			hostname TEXT NOT NULL DEFAULT '',
			state TEXT NOT NULL,
			expires BIGINT NOT NULL,
			updated BIGINT NOT NULL
		);
		CREATE UNIQUE INDEX dhcp_leases_mac ON dhcp_leases (mac) WHERE mac <> ''`,
	}}
}

// Config configures a Store.
type Config struct {
	Pool dhcp.Pool
	// OfferHold is how long an offered address stays reserved for the
	// client it was offered to (default 60s).
	OfferHold time.Duration
	// DeclineHold is how long a declined address is not handed out
	// (default 10m).
	DeclineHold time.Duration
	// Now is the clock (default time.Now); tests set it.
	Now func() time.Time
	// SyncCommits makes every commit wait for the disk (an fsync on
	// SQLite), so that an acknowledged lease survives a power loss too.
	// By default (false) it survives a crash of the process: on SQLite it
	// is in the WAL file when the ACK is sent, fsynced at the next
	// checkpoint.
	SyncCommits bool
}

// Store is the lease database, dhcp.Leases kept in the store. Safe for
// concurrent use; several servers may share one PostgreSQL database.
//
// Like Kea's memfile, it answers offers from memory: known holds an
// index of the lease rows, loaded at start and kept up to date with this
// store's committed writes. The database stays the authority: an ACK
// reads the rows it depends on inside its transaction (so a row another
// server or the CLI changed is seen, and refreshes the index), and
// concurrent ACKs are committed together, one transaction for all that
// arrive while the previous commit runs (group commit). An ACK is
// answered only once its transaction has committed, so no lease promised
// to a client is lost with the process. The store's transactions run on
// one connection it holds (store.Conn), with its statements prepared
// there.
type Store struct {
	db  *store.DB
	w   *store.Conn // the store's transactions
	cfg Config

	mu     sync.Mutex // guards what follows
	cursor int        // next pool offset to try: a hint, not state
	offers map[netip.Addr]offer
	known  index

	commit  sync.Mutex // held while a batch or a static offer is written
	pendMu  sync.Mutex // guards what follows
	pending []*ackJob  // ACKs waiting to be committed, in arrival order
	leading bool       // an ACK's goroutine is committing batches (lead)
}

// The ACK path's statements (prepared on the store's connection).
const (
	rowsForQ      = `SELECT ` + leaseCols + ` FROM dhcp_leases WHERE ip = ? OR (mac = ? AND mac <> '')`
	updateQ       = `UPDATE dhcp_leases SET hostname = ?, state = ?, expires = ?, updated = ? WHERE ip = ?`
	insertQ       = `INSERT INTO dhcp_leases (ip, mac, hostname, state, expires, updated) VALUES (?, ?, ?, ?, ?, ?)`
	reclaimQ      = `DELETE FROM dhcp_leases WHERE ip = ?`
	dropOldQ      = `DELETE FROM dhcp_leases WHERE ip = ? AND mac = ?`
	updateMineQ   = `UPDATE dhcp_leases SET hostname = ?, state = ?, expires = ?, updated = ? WHERE ip = ? AND mac = ?`
	reclaimExactQ = `DELETE FROM dhcp_leases WHERE ip = ? AND mac = ? AND expires = ?`
)

// ackJob is one ACK waiting for a batch to commit it.
type ackJob struct {
	r    dhcp.AckRequest
	done chan ackResult // buffered: the committer never blocks
}

// ackResult answers an ackJob: its outcome, or (lead) that its goroutine
// now commits the waiting ACKs, its own among them.
type ackResult struct {
	l    dhcp.Lease
	err  error
	lead bool
}

// offer is an in-memory reservation of a pool address for a MAC.
type offer struct {
	mac     string
	expires time.Time
}

// New applies the lease migrations to db and returns the store.
func New(ctx context.Context, db *store.DB, cfg Config) (*Store, error) {
	if cfg.Pool.Size() == 0 && (cfg.Pool.Start.IsValid() || cfg.Pool.End.IsValid()) {
		return nil, fmt.Errorf("lease store: bad pool %s-%s", cfg.Pool.Start, cfg.Pool.End)
	}
	if cfg.OfferHold <= 0 {
		cfg.OfferHold = time.Minute
	}
	if cfg.DeclineHold <= 0 {
		cfg.DeclineHold = 10 * time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if err := db.Migrate(ctx, Migrations()); err != nil {
		return nil, fmt.Errorf("lease store: %w", err)
	}
	s := &Store{db: db, cfg: cfg, offers: map[netip.Addr]offer{}}
	if err := s.reload(ctx); err != nil {
		return nil, err
	}
	s.w = db.Pin(store.PinOptions{SyncCommits: cfg.SyncCommits})
	return s, nil
}

// Close releases the store's database connection (the DB's Close does
// too). The store must not be used after.
func (s *Store) Close() error { return s.w.Close() }

// reload replaces the in-memory index with the database's rows.
func (s *Store) reload(ctx context.Context) error {
	all, err := s.List(ctx)
	if err != nil {
		return fmt.Errorf("lease store: %w", err)
	}
	k := newIndex()
	for _, l := range all {
		k.put(l)
	}
	s.mu.Lock()
	s.known = k
	s.mu.Unlock()
	return nil
}

// Pool returns the store's pool.
func (s *Store) Pool() dhcp.Pool { return s.cfg.Pool }

const leaseCols = `ip, mac, hostname, state, expires`

type rowScanner interface{ Scan(...any) error }

func scanLease(r rowScanner) (dhcp.Lease, error) {
	var ip, mac, host, state string
	var exp int64
	if err := r.Scan(&ip, &mac, &host, &state, &exp); err != nil {
		return dhcp.Lease{}, err
	}
	l := dhcp.Lease{Hostname: host, State: dhcp.LeaseState(state)}
	var err error
	if l.IP, err = netip.ParseAddr(ip); err != nil {
		return dhcp.Lease{}, fmt.Errorf("lease row ip %q: %w", ip, err)
	}
	if mac != "" {
		if l.MAC, err = net.ParseMAC(mac); err != nil {
			return dhcp.Lease{}, fmt.Errorf("lease row mac %q: %w", mac, err)
		}
	}
	if exp != 0 {
		l.Expires = time.Unix(exp, 0)
	}
	return l, nil
}

func (s *Store) byMAC(ctx context.Context, q store.Querier, mac string) (dhcp.Lease, bool, error) {
	// "mac <> ''" repeats the partial index's condition so that SQLite
	// and PostgreSQL use the index instead of scanning the table.
	l, err := scanLease(q.QueryRow(ctx, `SELECT `+leaseCols+` FROM dhcp_leases WHERE mac = ? AND mac <> ''`, mac))
	if errors.Is(err, sql.ErrNoRows) {
		return dhcp.Lease{}, false, nil
	}
	if err != nil {
		return dhcp.Lease{}, false, fmt.Errorf("lease of %s: %w", mac, err)
	}
	return l, true, nil
}

func (s *Store) byIP(ctx context.Context, q store.Querier, ip netip.Addr) (dhcp.Lease, bool, error) {
	l, err := scanLease(q.QueryRow(ctx, `SELECT `+leaseCols+` FROM dhcp_leases WHERE ip = ?`, ip.String()))
	if errors.Is(err, sql.ErrNoRows) {
		return dhcp.Lease{}, false, nil
	}
	if err != nil {
		return dhcp.Lease{}, false, fmt.Errorf("lease on %s: %w", ip, err)
	}
	return l, true, nil
}

// rowsFor reads, in one query, the row of mac and the row on ip: what an
// ACK depends on.
func (s *Store) rowsFor(ctx context.Context, tx store.Querier, mac string, ip netip.Addr) (cur dhcp.Lease, have bool, holder dhcp.Lease, held bool, err error) {
	rows, err := tx.Query(ctx, rowsForQ, ip.String(), mac)
	if err != nil {
		return cur, false, holder, false, fmt.Errorf("leases of %s and %s: %w", mac, ip, err)
	}
	defer rows.Close()
	for rows.Next() {
		l, err := scanLease(rows)
		if err != nil {
			return cur, false, holder, false, err
		}
		if l.IP == ip {
			holder, held = l, true
		}
		if l.MAC.String() == mac {
			cur, have = l, true
		}
	}
	if err := rows.Err(); err != nil {
		return cur, false, holder, false, fmt.Errorf("leases of %s and %s: %w", mac, ip, err)
	}
	return cur, have, holder, held, nil
}

// ByMAC returns the lease row of a MAC, or store.ErrNotFound.
func (s *Store) ByMAC(ctx context.Context, mac net.HardwareAddr) (dhcp.Lease, error) {
	l, ok, err := s.byMAC(ctx, s.db, mac.String())
	if err != nil {
		return dhcp.Lease{}, err
	}
	if !ok {
		return dhcp.Lease{}, fmt.Errorf("lease of %s: %w", mac, store.ErrNotFound)
	}
	return l, nil
}

// List returns every lease row, ordered by address.
func (s *Store) List(ctx context.Context) ([]dhcp.Lease, error) {
	rows, err := s.db.Query(ctx, `SELECT `+leaseCols+` FROM dhcp_leases`)
	if err != nil {
		return nil, fmt.Errorf("list leases: %w", err)
	}
	defer rows.Close()
	var out []dhcp.Lease
	for rows.Next() {
		l, err := scanLease(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, l)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list leases: %w", err)
	}
	// Sorted here, not in SQL: the ip column is text ("10.0.0.10" <
	// "10.0.0.9").
	slices.SortFunc(out, func(a, b dhcp.Lease) int { return a.IP.Compare(b.IP) })
	return out, nil
}

// Offer picks the address to offer a client: the static address if
// given (written at once, taking it over from a pool lease); else the
// address the MAC already holds; else the requested address if free in
// the pool; else the next free pool address. A pool address is free when
// it has no row or an expired one, and no unexpired offer to another MAC.
// Pool offers are decided from the in-memory index; when it finds the
// pool full it is reloaded from the database once (another server or the
// CLI may have freed addresses).
func (s *Store) Offer(ctx context.Context, r dhcp.OfferRequest) (dhcp.Lease, error) {
	if r.Static.IsValid() {
		s.commit.Lock()
		defer s.commit.Unlock()
		var out dhcp.Lease
		var fx []effect
		err := s.retryConflicts(ctx, func(tx store.Querier) error {
			mac := r.MAC.String()
			fx = fx[:0]
			cur, have, holder, held, err := s.rowsFor(ctx, tx, mac, r.Static)
			if err != nil {
				return err
			}
			fx = observe(fx, mac, r.Static, cur, have, holder, held)
			if have && cur.IP == r.Static && cur.State == dhcp.StateStatic {
				out = cur
				return nil
			}
			out, fx, err = s.takeTx(ctx, tx, fx, mac, r.Static, r.Hostname, dhcp.StateStatic, time.Time{}, cur, have, holder, held, true)
			return err
		})
		s.apply(fx, err == nil)
		return out, err
	}
	l, err := s.offerPool(r)
	if errors.Is(err, dhcp.ErrPoolExhausted) {
		if rerr := s.reload(ctx); rerr != nil {
			return dhcp.Lease{}, rerr
		}
		l, err = s.offerPool(r)
	}
	return l, err
}

// retryConflicts runs fn in a transaction, again when another server
// took the same address first (unique violation).
func (s *Store) retryConflicts(ctx context.Context, fn func(tx store.Querier) error) error {
	return retry.Do(ctx, retry.Policy{Attempts: 8, Retryable: store.IsUniqueViolation},
		func(int) error { return s.w.InTx(ctx, fn) })
}

// offerPool finds a pool address for r in the in-memory index and
// reserves it.
func (s *Store) offerPool(r dhcp.OfferRequest) (dhcp.Lease, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.cfg.Now()
	mac := r.MAC.String()
	s.pruneOffers(now)
	cur, have := s.known.byMAC(mac)
	// The MAC's own address, unless it was static (the host lost its
	// static binding) or is outside the pool (the pool changed).
	if have && cur.State != dhcp.StateStatic && cur.State != dhcp.StateDeclined && s.cfg.Pool.Contains(cur.IP) {
		if cur.State == dhcp.StateBound && cur.Expires.After(now) {
			return cur, nil // already held
		}
		if !s.offeredToOther(cur.IP, mac, now) {
			return s.reserve(cur.IP, mac, r.Hostname, now), nil
		}
	}
	if s.cfg.Pool.Contains(r.Requested) && s.free(r.Requested, mac, now) {
		return s.reserve(r.Requested, mac, r.Hostname, now), nil
	}
	size := s.cfg.Pool.Size()
	for i := range size {
		off := (s.cursor + i) % size
		ip := s.cfg.Pool.Nth(off)
		if s.free(ip, mac, now) {
			s.cursor = (off + 1) % size
			return s.reserve(ip, mac, r.Hostname, now), nil
		}
	}
	return dhcp.Lease{}, dhcp.ErrPoolExhausted
}

// free reports whether ip may be offered to mac: no live row of another
// MAC and no unexpired offer to another MAC. Called with s.mu held.
func (s *Store) free(ip netip.Addr, mac string, now time.Time) bool {
	if s.offeredToOther(ip, mac, now) {
		return false
	}
	holder, held := s.known.rows[ip]
	return !held || holder.MAC.String() == mac || !holder.Live(now)
}

func (s *Store) offeredToOther(ip netip.Addr, mac string, now time.Time) bool {
	o, ok := s.offers[ip]
	return ok && o.mac != mac && o.expires.After(now)
}

func (s *Store) reserve(ip netip.Addr, mac, host string, now time.Time) dhcp.Lease {
	exp := now.Add(s.cfg.OfferHold)
	s.offers[ip] = offer{mac: mac, expires: exp}
	hw, _ := net.ParseMAC(mac)
	return dhcp.Lease{IP: ip, MAC: hw, Hostname: host, State: dhcp.StateOffered, Expires: exp}
}

// Withdraw forgets the pool offer made to a MAC, if any: the client chose
// another server's offer (its REQUEST names that server), so the address
// is free again at once instead of after OfferHold.
func (s *Store) Withdraw(mac net.HardwareAddr) {
	m := mac.String()
	s.mu.Lock()
	defer s.mu.Unlock()
	for ip, o := range s.offers {
		if o.mac == m {
			delete(s.offers, ip)
		}
	}
}

// pruneOffers drops expired offers once the table grows.
func (s *Store) pruneOffers(now time.Time) {
	if len(s.offers) < 4096 {
		return
	}
	for ip, o := range s.offers {
		if !o.expires.After(now) {
			delete(s.offers, ip)
		}
	}
}

// takeTx gives ip to mac in state st, if ip is free, expired, already
// the MAC's, or (force) held by a non-static lease of another MAC. The
// MAC's previous row (cur), if on another address, is removed. holder is
// the row on ip, read in the same transaction. What it changes is added
// to fx, for the in-memory index once the transaction commits.
func (s *Store) takeTx(ctx context.Context, tx store.Querier, fx []effect, mac string, ip netip.Addr, host string,
	st dhcp.LeaseState, exp time.Time, cur dhcp.Lease, have bool, holder dhcp.Lease, held, force bool) (dhcp.Lease, []effect, error) {
	now := s.cfg.Now()
	mine := held && holder.MAC.String() == mac
	if held && !mine {
		reclaim := !holder.Live(now) || (force && holder.State != dhcp.StateStatic)
		if !reclaim {
			return dhcp.Lease{}, fx, fmt.Errorf("%s for %s: %w", ip, mac, dhcp.ErrUnavailable)
		}
		if _, err := tx.Exec(ctx, reclaimQ, ip.String()); err != nil {
			return dhcp.Lease{}, fx, fmt.Errorf("reclaim %s: %w", ip, err)
		}
		fx = append(fx, effect{del: ip})
	}
	if have && cur.IP != ip {
		if _, err := tx.Exec(ctx, dropOldQ, cur.IP.String(), mac); err != nil {
			return dhcp.Lease{}, fx, fmt.Errorf("drop old lease of %s: %w", mac, err)
		}
		fx = append(fx, effect{del: cur.IP})
	}
	if host == "" && mine {
		host = holder.Hostname
	}
	var e int64
	if !exp.IsZero() {
		e = exp.Unix()
	}
	var err error
	if mine {
		_, err = tx.Exec(ctx, updateQ, host, string(st), e, now.Unix(), ip.String())
	} else {
		_, err = tx.Exec(ctx, insertQ, ip.String(), mac, host, string(st), e, now.Unix())
	}
	if err != nil {
		return dhcp.Lease{}, fx, fmt.Errorf("lease %s to %s: %w", ip, mac, err)
	}
	hw, _ := net.ParseMAC(mac)
	l := dhcp.Lease{IP: ip, MAC: hw, Hostname: host, State: st, Expires: exp}
	kept := l
	if e != 0 {
		kept.Expires = time.Unix(e, 0) // as the table keeps it: seconds
	}
	return l, append(fx, effect{put: kept, bound: true}), nil
}

// Ack binds IP to the MAC if it may have it: its static address, or a
// pool address that is free or already the MAC's. Otherwise it returns
// dhcp.ErrUnavailable and the server NAKs. It returns once the binding is
// committed.
//
// ACKs are committed in batches, one transaction each: the ACK that finds
// no batch being written leads, writing every ACK waiting (its own among
// them) in one transaction and answering each; ACKs that arrive meanwhile
// wait, and the first of them leads the next batch once this one is
// committed. A waiting goroutine wakes once, when its answer (or its turn
// to lead) is ready: none waits on a lock held through another batch.
func (s *Store) Ack(ctx context.Context, r dhcp.AckRequest) (dhcp.Lease, error) {
	if !r.Static && !s.cfg.Pool.Contains(r.IP) {
		return dhcp.Lease{}, fmt.Errorf("%s for %s outside pool: %w", r.IP, r.MAC, dhcp.ErrUnavailable)
	}
	job := &ackJob{r: r, done: make(chan ackResult, 1)}
	s.pendMu.Lock()
	s.pending = append(s.pending, job)
	lead := !s.leading
	s.leading = true
	s.pendMu.Unlock()
	if !lead {
		if res := <-job.done; !res.lead {
			return res.l, res.err
		}
	}
	s.lead(ctx)
	res := <-job.done
	return res.l, res.err
}

// lead commits the waiting ACKs in one batch, then hands the lead to the
// first ACK that arrived meanwhile, if any. Called by the goroutine that
// leads, whose own ACK is among those waiting.
func (s *Store) lead(ctx context.Context) {
	s.pendMu.Lock()
	alone := len(s.pending) == 1
	s.pendMu.Unlock()
	if alone {
		// Let the other runnable requests reach this point first: with
		// them the transaction's fixed cost is shared (nothing to wait
		// for when there are none).
		runtime.Gosched()
	}
	s.pendMu.Lock()
	batch := s.pending
	s.pending = nil
	s.pendMu.Unlock()
	s.commit.Lock()
	s.runBatch(ctx, batch)
	s.commit.Unlock()
	s.pendMu.Lock()
	if len(s.pending) > 0 {
		s.pending[0].done <- ackResult{lead: true}
	} else {
		s.leading = false
	}
	s.pendMu.Unlock()
}

// maxBatch bounds the ACKs committed in one transaction.
const maxBatch = 256

// runBatch commits a batch of ACKs in one transaction, written from the
// in-memory index, and answers each. A refusal (ErrUnavailable) answers
// only its own ACK; any other failure (the index was out of date, or
// another server took an address meanwhile) rolls the batch back, and
// its ACKs are then committed one by one, each reading its rows first, so
// that one ACK's conflict does not fail the others. Called with s.commit
// held.
func (s *Store) runBatch(ctx context.Context, batch []*ackJob) {
	for len(batch) > maxBatch {
		s.runBatch(ctx, batch[:maxBatch])
		batch = batch[maxBatch:]
	}
	results := make([]ackResult, len(batch))
	var fx []effect
	err := s.w.InTx(ctx, func(tx store.Querier) error {
		fx = fx[:0]
		for i, j := range batch {
			var err error
			results[i].l, fx, err = s.ackTx(ctx, tx, fx, j.r, true)
			if err != nil && !errors.Is(err, dhcp.ErrUnavailable) {
				return err
			}
			results[i].err = err
		}
		return nil
	})
	if err == nil {
		s.apply(fx, true)
		for i, j := range batch {
			j.done <- results[i]
		}
		return
	}
	for _, j := range batch {
		var l dhcp.Lease
		var fx []effect
		err := s.retryConflicts(ctx, func(tx store.Querier) error {
			var err error
			l, fx, err = s.ackTx(ctx, tx, fx[:0], j.r, false)
			return err
		})
		s.apply(fx, err == nil || errors.Is(err, dhcp.ErrUnavailable))
		j.done <- ackResult{l: l, err: err}
	}
}

// ackTx is one ACK inside a transaction. ErrUnavailable writes nothing.
// With fast, a pool ACK is first tried from the in-memory index (ackFast).
func (s *Store) ackTx(ctx context.Context, tx store.Querier, fx []effect, r dhcp.AckRequest, fast bool) (dhcp.Lease, []effect, error) {
	if fast && !r.Static {
		if l, out, ok, err := s.ackFast(ctx, tx, fx, r); ok {
			return l, out, err
		}
	}
	mac := r.MAC.String()
	cur, have, holder, held, err := s.rowsFor(ctx, tx, mac, r.IP)
	if err != nil {
		return dhcp.Lease{}, fx, err
	}
	fx = observe(fx, mac, r.IP, cur, have, holder, held)
	if r.Static {
		return s.takeTx(ctx, tx, fx, mac, r.IP, r.Hostname, dhcp.StateStatic, time.Time{}, cur, have, holder, held, true)
	}
	now := s.cfg.Now()
	s.mu.Lock()
	other := s.offeredToOther(r.IP, mac, now)
	s.mu.Unlock()
	if other {
		return dhcp.Lease{}, fx, fmt.Errorf("%s for %s offered to another client: %w", r.IP, mac, dhcp.ErrUnavailable)
	}
	return s.takeTx(ctx, tx, fx, mac, r.IP, r.Hostname, dhcp.StateBound, now.Add(r.LeaseTime), cur, have, holder, held, false)
}

// errStale is a write made from the in-memory index that found the table
// changed (another server or the CLI wrote the row): the transaction is
// rolled back, and its ACKs are done again reading the rows first.
var errStale = errors.New("lease index out of date")

// ackFast binds a pool address from what the in-memory index knows,
// without reading the table first: each write names the row it expects
// (the MAC's own row, or the expired row it reclaims) and fails with
// errStale when the table differs, and an INSERT onto a row the index
// missed fails on the table's unique keys. ok is false when the index
// gives no fast answer (the address is held by another client): the
// reading path decides, nothing is written.
func (s *Store) ackFast(ctx context.Context, tx store.Querier, fx []effect, r dhcp.AckRequest) (l dhcp.Lease, out []effect, ok bool, err error) {
	mac := r.MAC.String()
	now := s.cfg.Now()
	s.mu.Lock()
	holder, held := s.known.rows[r.IP]
	cur, have := s.known.byMAC(mac)
	other := s.offeredToOther(r.IP, mac, now)
	s.mu.Unlock()
	if other {
		return dhcp.Lease{}, fx, true, fmt.Errorf("%s for %s offered to another client: %w", r.IP, mac, dhcp.ErrUnavailable)
	}
	mine := held && holder.MAC.String() == mac
	if held && !mine && holder.Live(now) {
		return dhcp.Lease{}, fx, false, nil
	}
	ip := r.IP.String()
	if held && !mine {
		res, err := tx.Exec(ctx, reclaimExactQ, ip, holder.MAC.String(), holder.Expires.Unix())
		if err := one(res, err); err != nil {
			return dhcp.Lease{}, fx, true, fmt.Errorf("reclaim %s: %w", r.IP, err)
		}
		fx = append(fx, effect{del: r.IP})
	}
	if have && cur.IP != r.IP {
		if _, err := tx.Exec(ctx, dropOldQ, cur.IP.String(), mac); err != nil {
			return dhcp.Lease{}, fx, true, fmt.Errorf("drop old lease of %s: %w", mac, err)
		}
		fx = append(fx, effect{del: cur.IP})
	}
	host := r.Hostname
	if host == "" && mine {
		host = holder.Hostname
	}
	exp := now.Add(r.LeaseTime)
	if mine {
		res, err := tx.Exec(ctx, updateMineQ, host, string(dhcp.StateBound), exp.Unix(), now.Unix(), ip, mac)
		err = one(res, err)
		if err != nil {
			return dhcp.Lease{}, fx, true, fmt.Errorf("lease %s to %s: %w", r.IP, mac, err)
		}
	} else if _, err := tx.Exec(ctx, insertQ, ip, mac, host, string(dhcp.StateBound), exp.Unix(), now.Unix()); err != nil {
		return dhcp.Lease{}, fx, true, fmt.Errorf("lease %s to %s: %w", r.IP, mac, err)
	}
	l = dhcp.Lease{IP: r.IP, MAC: r.MAC, Hostname: host, State: dhcp.StateBound, Expires: exp}
	kept := l
	kept.Expires = time.Unix(exp.Unix(), 0)
	return l, append(fx, effect{put: kept, bound: true}), true, nil
}

// one checks that a conditional write changed exactly one row.
func one(res sql.Result, err error) error {
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n != 1 {
		return errStale
	}
	return nil
}

// Pin gives the MAC a permanent pool address (its current one if it has
// one), e.g. when discovery names a new node. The row becomes static.
func (s *Store) Pin(ctx context.Context, mac net.HardwareAddr, hostname string) (dhcp.Lease, error) {
	l, err := s.Offer(ctx, dhcp.OfferRequest{MAC: mac, Hostname: hostname})
	if err != nil {
		return dhcp.Lease{}, fmt.Errorf("pin %s: %w", mac, err)
	}
	if l.State == dhcp.StateStatic {
		return l, nil
	}
	return s.Ack(ctx, dhcp.AckRequest{MAC: mac, IP: l.IP, Hostname: hostname, Static: true})
}

// Release gives back the MAC's address (DHCPRELEASE). Static leases stay.
func (s *Store) Release(ctx context.Context, mac net.HardwareAddr, ip netip.Addr) error {
	_, err := s.db.Exec(ctx, `UPDATE dhcp_leases SET state = ?, expires = ?, updated = ? WHERE ip = ? AND mac = ? AND state <> ?`,
		string(dhcp.StateReleased), s.cfg.Now().Unix(), s.cfg.Now().Unix(), ip.String(), mac.String(), string(dhcp.StateStatic))
	if err != nil {
		return fmt.Errorf("release %s from %s: %w", ip, mac, err)
	}
	return s.refresh(ctx, ip)
}

// Decline marks an address the MAC found in use (DHCPDECLINE): no one
// gets it for DeclineHold. Static leases are left alone.
func (s *Store) Decline(ctx context.Context, mac net.HardwareAddr, ip netip.Addr) error {
	now := s.cfg.Now()
	_, err := s.db.Exec(ctx, `UPDATE dhcp_leases SET mac = '', state = ?, expires = ?, updated = ? WHERE ip = ? AND mac = ? AND state <> ?`,
		string(dhcp.StateDeclined), now.Add(s.cfg.DeclineHold).Unix(), now.Unix(), ip.String(), mac.String(), string(dhcp.StateStatic))
	if err != nil {
		return fmt.Errorf("decline %s from %s: %w", ip, mac, err)
	}
	return s.refresh(ctx, ip)
}

// Forget deletes the MAC's lease, static or not (a host was removed).
func (s *Store) Forget(ctx context.Context, mac net.HardwareAddr) error {
	if _, err := s.db.Exec(ctx, `DELETE FROM dhcp_leases WHERE mac = ? AND mac <> ''`, mac.String()); err != nil {
		return fmt.Errorf("forget lease of %s: %w", mac, err)
	}
	s.mu.Lock()
	s.known.delMAC(mac.String())
	s.mu.Unlock()
	return nil
}

// refresh reads the row on ip into the in-memory index.
func (s *Store) refresh(ctx context.Context, ip netip.Addr) error {
	l, ok, err := s.byIP(ctx, s.db, ip)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if ok {
		s.known.put(l)
	} else {
		s.known.del(ip)
	}
	return nil
}
