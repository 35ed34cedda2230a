package dhcp

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"ironbark/internal/store"
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

// LeaseState is the life-cycle state of a lease row.
type LeaseState string

const (
	// StateOffered: offered to a client that has not requested it yet.
	// Offers of pool addresses are held in memory for
	// LeaseStoreConfig.OfferHold, not written: a DORA costs one write, and
	// an offer lost in a crash costs at most a NAK (the ACK is what the
	// unique address key guards).
	StateOffered LeaseState = "offered"
	// StateBound: acknowledged; held until Expires.
	StateBound LeaseState = "bound"
	// StateReleased: given back by the client; the MAC keeps a claim on it
	// (it gets the address back) until the pool needs it for another.
	StateReleased LeaseState = "released"
	// StateDeclined: the client saw the address in use (DHCPDECLINE); it is
	// not handed out until Expires.
	StateDeclined LeaseState = "declined"
	// StateStatic: a static or pinned address; never expires, never
	// reclaimed by the pool.
	StateStatic LeaseState = "static"
)

// Lease is one row of the lease database.
type Lease struct {
	IP       netip.Addr
	MAC      net.HardwareAddr // nil for declined addresses
	Hostname string
	State    LeaseState
	Expires  time.Time // zero for StateStatic
}

// Pool is an inclusive range of IPv4 addresses handed out to clients that
// have no static address.
type Pool struct {
	Start, End netip.Addr
}

// Contains reports whether ip lies in the pool.
func (p Pool) Contains(ip netip.Addr) bool {
	return ip.Is4() && p.Start.Is4() && p.End.Is4() && p.Start.Compare(ip) <= 0 && ip.Compare(p.End) <= 0
}

// Size is the number of addresses in the pool.
func (p Pool) Size() int {
	if !p.Start.Is4() || !p.End.Is4() || p.End.Less(p.Start) {
		return 0
	}
	return int(u32(p.End)-u32(p.Start)) + 1
}

// PoolFor returns the default pool of a subnet: the upper half of its
// host addresses (the lower half is left for static hosts and the
// frontend), e.g. 10.1.0.128-10.1.0.254 for 10.1.0.0/24.
func PoolFor(subnet netip.Prefix) (Pool, error) {
	subnet = subnet.Masked()
	if !subnet.Addr().Is4() || subnet.Bits() > 30 {
		return Pool{}, fmt.Errorf("pool for %s: need an IPv4 subnet of at least 4 addresses", subnet)
	}
	base := u32(subnet.Addr())
	size := uint32(1) << (32 - subnet.Bits())
	return Pool{Start: a4(base + size/2), End: a4(base + size - 2)}, nil
}

func u32(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func a4(v uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// ErrUnavailable means the address cannot be given to this client: it is
// held by another, outside the pool, or declined. The server answers NAK.
var ErrUnavailable = errors.New("address not available")

// ErrPoolExhausted means no pool address is free.
var ErrPoolExhausted = errors.New("address pool exhausted")

// LeaseStoreConfig configures a LeaseStore.
type LeaseStoreConfig struct {
	Pool Pool
	// OfferHold is how long an offered address stays reserved for the
	// client it was offered to (default 60s).
	OfferHold time.Duration
	// DeclineHold is how long a declined address is not handed out
	// (default 10m).
	DeclineHold time.Duration
	// Now is the clock (default time.Now); tests set it.
	Now func() time.Time
}

// LeaseStore is the lease database. Safe for concurrent use; several
// servers may share one PostgreSQL database.
type LeaseStore struct {
	db  *store.DB
	cfg LeaseStoreConfig

	mu     sync.Mutex // serialises allocation in this process
	cursor uint32     // next pool offset to try: a hint, not state
	offers map[netip.Addr]offer
}

// offer is an in-memory reservation of a pool address for a MAC.
type offer struct {
	mac     string
	expires time.Time
}

// NewLeaseStore applies the lease migrations to db and returns the store.
func NewLeaseStore(ctx context.Context, db *store.DB, cfg LeaseStoreConfig) (*LeaseStore, error) {
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
	return &LeaseStore{db: db, cfg: cfg, offers: map[netip.Addr]offer{}}, nil
}

// Pool returns the store's pool.
func (s *LeaseStore) Pool() Pool { return s.cfg.Pool }

const leaseCols = `ip, mac, hostname, state, expires`

type rowScanner interface{ Scan(...any) error }

func scanLease(r rowScanner) (Lease, error) {
	var ip, mac, host, state string
	var exp int64
	if err := r.Scan(&ip, &mac, &host, &state, &exp); err != nil {
		return Lease{}, err
	}
	l := Lease{Hostname: host, State: LeaseState(state)}
	var err error
	if l.IP, err = netip.ParseAddr(ip); err != nil {
		return Lease{}, fmt.Errorf("lease row ip %q: %w", ip, err)
	}
	if mac != "" {
		if l.MAC, err = net.ParseMAC(mac); err != nil {
			return Lease{}, fmt.Errorf("lease row mac %q: %w", mac, err)
		}
	}
	if exp != 0 {
		l.Expires = time.Unix(exp, 0)
	}
	return l, nil
}

// live reports whether the lease still holds its address at now.
func (l Lease) live(now time.Time) bool {
	return l.State == StateStatic || l.Expires.After(now)
}

func (s *LeaseStore) byMAC(ctx context.Context, q store.Querier, mac string) (Lease, bool, error) {
	// "mac <> ''" repeats the partial index's condition so that SQLite
	// and PostgreSQL use the index instead of scanning the table.
	l, err := scanLease(q.QueryRow(ctx, `SELECT `+leaseCols+` FROM dhcp_leases WHERE mac = ? AND mac <> ''`, mac))
	if errors.Is(err, sql.ErrNoRows) {
		return Lease{}, false, nil
	}
	if err != nil {
		return Lease{}, false, fmt.Errorf("lease of %s: %w", mac, err)
	}
	return l, true, nil
}

func (s *LeaseStore) byIP(ctx context.Context, q store.Querier, ip netip.Addr) (Lease, bool, error) {
	l, err := scanLease(q.QueryRow(ctx, `SELECT `+leaseCols+` FROM dhcp_leases WHERE ip = ?`, ip.String()))
	if errors.Is(err, sql.ErrNoRows) {
		return Lease{}, false, nil
	}
	if err != nil {
		return Lease{}, false, fmt.Errorf("lease on %s: %w", ip, err)
	}
	return l, true, nil
}

// ByMAC returns the lease row of a MAC, or store.ErrNotFound.
func (s *LeaseStore) ByMAC(ctx context.Context, mac net.HardwareAddr) (Lease, error) {
	l, ok, err := s.byMAC(ctx, s.db, mac.String())
	if err != nil {
		return Lease{}, err
	}
	if !ok {
		return Lease{}, fmt.Errorf("lease of %s: %w", mac, store.ErrNotFound)
	}
	return l, nil
}

// List returns every lease row, ordered by address.
func (s *LeaseStore) List(ctx context.Context) ([]Lease, error) {
	rows, err := s.db.Query(ctx, `SELECT `+leaseCols+` FROM dhcp_leases`)
	if err != nil {
		return nil, fmt.Errorf("list leases: %w", err)
	}
	defer rows.Close()
	var out []Lease
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
	slices.SortFunc(out, func(a, b Lease) int { return a.IP.Compare(b.IP) })
	return out, nil
}

// OfferRequest asks for an address to offer a client.
type OfferRequest struct {
	MAC      net.HardwareAddr
	Hostname string
	// Static, when set, is the client's static address (Binding.IP).
	Static netip.Addr
	// Requested is the address the client asked for (option 50), a hint.
	Requested netip.Addr
}

// Offer picks the address to offer a client: the static address if
// given (written at once, taking it over from a pool lease); else the
// address the MAC already holds; else the requested address if free in
// the pool; else the next free pool address. A pool address is free when
// it has no row or an expired one, and no unexpired offer to another MAC.
func (s *LeaseStore) Offer(ctx context.Context, r OfferRequest) (Lease, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r.Static.IsValid() {
		var out Lease
		err := s.retryConflicts(ctx, func(tx *store.Tx) error {
			mac := r.MAC.String()
			cur, have, err := s.byMAC(ctx, tx, mac)
			if err != nil {
				return err
			}
			if have && cur.IP == r.Static && cur.State == StateStatic {
				out = cur
				return nil
			}
			out, err = s.takeTx(ctx, tx, mac, r.Static, r.Hostname, StateStatic, time.Time{}, cur, have, true)
			return err
		})
		return out, err
	}
	return s.offerPool(ctx, r)
}

// retryConflicts runs fn in a transaction, again when another server
// took the same address first (unique violation).
func (s *LeaseStore) retryConflicts(ctx context.Context, fn func(tx *store.Tx) error) error {
	var err error
	for attempt := 0; attempt < 8; attempt++ {
		err = s.db.InTx(ctx, fn)
		if !store.IsUniqueViolation(err) {
			return err
		}
	}
	return err
}

// offerPool finds a pool address for r and reserves it in memory. Only
// reads the database. Called with s.mu held.
func (s *LeaseStore) offerPool(ctx context.Context, r OfferRequest) (Lease, error) {
	now := s.cfg.Now()
	mac := r.MAC.String()
	s.pruneOffers(now)
	cur, have, err := s.byMAC(ctx, s.db, mac)
	if err != nil {
		return Lease{}, err
	}
	// The MAC's own address, unless it was static (the host lost its
	// static binding) or is outside the pool (the pool changed).
	if have && cur.State != StateStatic && cur.State != StateDeclined && s.cfg.Pool.Contains(cur.IP) {
		if cur.State == StateBound && cur.Expires.After(now) {
			return cur, nil // already held
		}
		if !s.offeredToOther(cur.IP, mac, now) {
			return s.reserve(cur.IP, mac, r.Hostname, now), nil
		}
	}
	if s.cfg.Pool.Contains(r.Requested) {
		if ok, err := s.free(ctx, r.Requested, mac, now); err != nil || ok {
			if err != nil {
				return Lease{}, err
			}
			return s.reserve(r.Requested, mac, r.Hostname, now), nil
		}
	}
	size := uint32(s.cfg.Pool.Size())
	start := u32(s.cfg.Pool.Start)
	for i := uint32(0); i < size; i++ {
		off := (s.cursor + i) % size
		ip := a4(start + off)
		ok, err := s.free(ctx, ip, mac, now)
		if err != nil {
			return Lease{}, err
		}
		if ok {
			s.cursor = (off + 1) % size
			return s.reserve(ip, mac, r.Hostname, now), nil
		}
	}
	return Lease{}, ErrPoolExhausted
}

// free reports whether ip may be offered to mac: no live row of another
// MAC and no unexpired offer to another MAC.
func (s *LeaseStore) free(ctx context.Context, ip netip.Addr, mac string, now time.Time) (bool, error) {
	if s.offeredToOther(ip, mac, now) {
		return false, nil
	}
	holder, held, err := s.byIP(ctx, s.db, ip)
	if err != nil {
		return false, err
	}
	return !held || holder.MAC.String() == mac || !holder.live(now), nil
}

func (s *LeaseStore) offeredToOther(ip netip.Addr, mac string, now time.Time) bool {
	o, ok := s.offers[ip]
	return ok && o.mac != mac && o.expires.After(now)
}

func (s *LeaseStore) reserve(ip netip.Addr, mac, host string, now time.Time) Lease {
	exp := now.Add(s.cfg.OfferHold)
	s.offers[ip] = offer{mac: mac, expires: exp}
	hw, _ := net.ParseMAC(mac)
	return Lease{IP: ip, MAC: hw, Hostname: host, State: StateOffered, Expires: exp}
}

// Withdraw forgets the pool offer made to a MAC, if any: the client chose
// another server's offer (its REQUEST names that server), so the address
// is free again at once instead of after OfferHold.
func (s *LeaseStore) Withdraw(mac net.HardwareAddr) {
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
func (s *LeaseStore) pruneOffers(now time.Time) {
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
// MAC's previous row (cur), if on another address, is removed.
func (s *LeaseStore) takeTx(ctx context.Context, tx *store.Tx, mac string, ip netip.Addr, host string,
	st LeaseState, exp time.Time, cur Lease, have, force bool) (Lease, error) {
	now := s.cfg.Now()
	holder, held, err := s.byIP(ctx, tx, ip)
	if err != nil {
		return Lease{}, err
	}
	mine := held && holder.MAC.String() == mac
	if held && !mine {
		reclaim := !holder.live(now) || (force && holder.State != StateStatic)
		if !reclaim {
			return Lease{}, fmt.Errorf("%s for %s: %w", ip, mac, ErrUnavailable)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM dhcp_leases WHERE ip = ?`, ip.String()); err != nil {
			return Lease{}, fmt.Errorf("reclaim %s: %w", ip, err)
		}
	}
	if have && cur.IP != ip {
		if _, err := tx.Exec(ctx, `DELETE FROM dhcp_leases WHERE ip = ? AND mac = ?`, cur.IP.String(), mac); err != nil {
			return Lease{}, fmt.Errorf("drop old lease of %s: %w", mac, err)
		}
	}
	if host == "" && mine {
		host = holder.Hostname
	}
	var e int64
	if !exp.IsZero() {
		e = exp.Unix()
	}
	if mine {
		_, err = tx.Exec(ctx, `UPDATE dhcp_leases SET hostname = ?, state = ?, expires = ?, updated = ? WHERE ip = ?`,
			host, string(st), e, now.Unix(), ip.String())
	} else {
		_, err = tx.Exec(ctx, `INSERT INTO dhcp_leases (ip, mac, hostname, state, expires, updated) VALUES (?, ?, ?, ?, ?, ?)`,
			ip.String(), mac, host, string(st), e, now.Unix())
	}
	if err != nil {
		return Lease{}, fmt.Errorf("lease %s to %s: %w", ip, mac, err)
	}
	hw, _ := net.ParseMAC(mac)
	return Lease{IP: ip, MAC: hw, Hostname: host, State: st, Expires: exp}, nil
}

// AckRequest confirms an address for a client (DHCPREQUEST).
type AckRequest struct {
	MAC      net.HardwareAddr
	IP       netip.Addr
	Hostname string
	// Static marks IP as the client's static address (Binding.IP).
	Static bool
	// LeaseTime is how long the address is held (ignored when Static).
	LeaseTime time.Duration
}

// Ack binds IP to the MAC if it may have it: its static address, or a
// pool address that is free or already the MAC's. Otherwise it returns
// ErrUnavailable and the server NAKs.
func (s *LeaseStore) Ack(ctx context.Context, r AckRequest) (Lease, error) {
	if !r.Static && !s.cfg.Pool.Contains(r.IP) {
		return Lease{}, fmt.Errorf("%s for %s outside pool: %w", r.IP, r.MAC, ErrUnavailable)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var out Lease
	err := s.retryConflicts(ctx, func(tx *store.Tx) error {
		mac := r.MAC.String()
		cur, have, err := s.byMAC(ctx, tx, mac)
		if err != nil {
			return err
		}
		if r.Static {
			out, err = s.takeTx(ctx, tx, mac, r.IP, r.Hostname, StateStatic, time.Time{}, cur, have, true)
			return err
		}
		now := s.cfg.Now()
		if s.offeredToOther(r.IP, mac, now) {
			return fmt.Errorf("%s for %s offered to another client: %w", r.IP, mac, ErrUnavailable)
		}
		out, err = s.takeTx(ctx, tx, mac, r.IP, r.Hostname, StateBound, now.Add(r.LeaseTime), cur, have, false)
		return err
	})
	if err == nil {
		delete(s.offers, r.IP)
	}
	return out, err
}

// Pin gives the MAC a permanent pool address (its current one if it has
// one), e.g. when discovery names a new node. The row becomes static.
func (s *LeaseStore) Pin(ctx context.Context, mac net.HardwareAddr, hostname string) (Lease, error) {
	l, err := s.Offer(ctx, OfferRequest{MAC: mac, Hostname: hostname})
	if err != nil {
		return Lease{}, fmt.Errorf("pin %s: %w", mac, err)
	}
	if l.State == StateStatic {
		return l, nil
	}
	return s.Ack(ctx, AckRequest{MAC: mac, IP: l.IP, Hostname: hostname, Static: true})
}

// Release gives back the MAC's address (DHCPRELEASE). Static leases stay.
func (s *LeaseStore) Release(ctx context.Context, mac net.HardwareAddr, ip netip.Addr) error {
	_, err := s.db.Exec(ctx, `UPDATE dhcp_leases SET state = ?, expires = ?, updated = ? WHERE ip = ? AND mac = ? AND state <> ?`,
		string(StateReleased), s.cfg.Now().Unix(), s.cfg.Now().Unix(), ip.String(), mac.String(), string(StateStatic))
	if err != nil {
		return fmt.Errorf("release %s from %s: %w", ip, mac, err)
	}
	return nil
}

// Decline marks an address the MAC found in use (DHCPDECLINE): no one
// gets it for DeclineHold. Static leases are left alone.
func (s *LeaseStore) Decline(ctx context.Context, mac net.HardwareAddr, ip netip.Addr) error {
	now := s.cfg.Now()
	_, err := s.db.Exec(ctx, `UPDATE dhcp_leases SET mac = '', state = ?, expires = ?, updated = ? WHERE ip = ? AND mac = ? AND state <> ?`,
		string(StateDeclined), now.Add(s.cfg.DeclineHold).Unix(), now.Unix(), ip.String(), mac.String(), string(StateStatic))
	if err != nil {
		return fmt.Errorf("decline %s from %s: %w", ip, mac, err)
	}
	return nil
}

// Forget deletes the MAC's lease, static or not (a host was removed).
func (s *LeaseStore) Forget(ctx context.Context, mac net.HardwareAddr) error {
	if _, err := s.db.Exec(ctx, `DELETE FROM dhcp_leases WHERE mac = ? AND mac <> ''`, mac.String()); err != nil {
		return fmt.Errorf("forget lease of %s: %w", mac, err)
	}
	return nil
}
