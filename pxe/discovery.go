package pxe

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"ironbark/internal/retry"
	"ironbark/internal/store"
)

// Session is the one discovery session (insert-ethers) that may run at a
// time: while it is active, unknown MACs that PXE-boot become hosts of
// its appliance, cluster and rack.
type Session struct {
	// ID names the session; the hosts it admits carry it.
	ID        string
	Appliance string
	Cluster   string
	Rack      int
	PID       int
	Hostname  string // machine the discover process runs on
	Started   time.Time
	Heartbeat time.Time
	// Max is how many new hosts the session admits; Admitted how many it
	// did, Refused how many MACs it turned away (LastRefused says the
	// last one and why).
	Max, Admitted, Refused int
	LastRefused            string
}

// DefaultMaxHosts is a discovery session's cap when none is given: a few
// racks' worth, far below a /24 pool, so a flood of fake MACs cannot take
// every address.
const DefaultMaxHosts = 64

// ErrRefused is returned for an unknown MAC that the live session does not
// admit (its cap is reached or no address is left).
var ErrRefused = errors.New("discovery refused the MAC")

// ErrDiscoveryActive is returned when a second discovery session is
// started while one is alive.
var ErrDiscoveryActive = errors.New("a discovery session is already running")

// StaleAfter is how long a session may go without a heartbeat before a
// new one may replace it. Discover processes beat every StaleAfter/5.
const StaleAfter = 15 * time.Second

// Discovery manages discovery sessions and names the MACs they see.
type Discovery struct {
	db    *store.DB
	hosts *Hosts
	now   func() time.Time
	// alive reports whether a pid on this machine still runs.
	alive func(pid int) bool
	// beatEvery is KeepAlive's period (StaleAfter/5).
	beatEvery time.Duration
}

// NewDiscovery returns the discovery manager on db.
func NewDiscovery(db *store.DB, hosts *Hosts) *Discovery {
	return &Discovery{db: db, hosts: hosts, now: time.Now, alive: pidAlive, beatEvery: StaleAfter / 5}
}

func pidAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

func (d *Discovery) stale(s Session) bool {
	if d.now().Sub(s.Heartbeat) > StaleAfter {
		return true
	}
	if host, _ := os.Hostname(); host == s.Hostname && !d.alive(s.PID) {
		return true
	}
	return false
}

func scanSession(row *sql.Row) (Session, error) {
	var s Session
	var started, beat int64
	err := row.Scan(&s.ID, &s.Appliance, &s.Cluster, &s.Rack, &s.PID, &s.Hostname, &started, &beat,
		&s.Max, &s.Admitted, &s.Refused, &s.LastRefused)
	s.Started, s.Heartbeat = time.Unix(started, 0), time.Unix(beat, 0)
	return s, err
}

const sessionCols = `session_id, appliance, cluster, rack, pid, hostname, started_at, heartbeat_at, max_hosts, admitted, refused, last_refused`

// Start begins a session for appliance/cluster/rack owned by this process
// that admits at most max new hosts (DefaultMaxHosts when max <= 0).
// It is refused with ErrDiscoveryActive while another live session exists;
// a session whose process died or stopped beating is replaced.
func (d *Discovery) Start(ctx context.Context, appliance, cluster string, rack, max int) (Session, error) {
	if max <= 0 {
		max = DefaultMaxHosts
	}
	if err := ValidAppliance(appliance); err != nil {
		return Session{}, err
	}
	if cluster == "" {
		return Session{}, errors.New("discovery needs a cluster name")
	}
	if rack < 0 {
		return Session{}, fmt.Errorf("rack %d: must be >= 0", rack)
	}
	host, _ := os.Hostname()
	now := d.now()
	id := make([]byte, 8)
	if _, err := rand.Read(id); err != nil {
		return Session{}, fmt.Errorf("start discovery: session ID: %w", err)
	}
	s := Session{ID: hex.EncodeToString(id), Appliance: appliance, Cluster: cluster, Rack: rack, PID: os.Getpid(), Hostname: host,
		Started: now, Heartbeat: now, Max: max}
	err := d.db.InTx(ctx, func(tx *store.Tx) error {
		old, err := scanSession(tx.QueryRow(ctx, `SELECT `+sessionCols+` FROM pxe_discovery WHERE id = 1`))
		switch {
		case errors.Is(err, sql.ErrNoRows):
		case err != nil:
			return fmt.Errorf("read discovery session: %w", err)
		case !d.stale(old):
			return fmt.Errorf("%w: appliance %s, cluster %s, rack %d, pid %d on %s since %s; end it (q) first",
				ErrDiscoveryActive, old.Appliance, old.Cluster, old.Rack, old.PID, old.Hostname,
				old.Started.UTC().Format(time.RFC3339))
		default:
			if _, err := tx.Exec(ctx, `DELETE FROM pxe_discovery WHERE id = 1`); err != nil {
				return fmt.Errorf("remove stale discovery session: %w", err)
			}
		}
		_, err = tx.Exec(ctx, `INSERT INTO pxe_discovery (id, `+sessionCols+`) VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, 0, '')`,
			s.ID, s.Appliance, s.Cluster, s.Rack, s.PID, s.Hostname, now.Unix(), now.Unix(), s.Max)
		if store.IsUniqueViolation(err) {
			return fmt.Errorf("%w (started concurrently)", ErrDiscoveryActive)
		}
		return err
	})
	if err != nil {
		return Session{}, fmt.Errorf("start discovery: %w", err)
	}
	return s, nil
}

// Beat refreshes the session's heartbeat. It fails if the session is no
// longer this one's (it was ended or replaced as stale).
func (d *Discovery) Beat(ctx context.Context, s Session) error {
	res, err := d.db.Exec(ctx, `UPDATE pxe_discovery SET heartbeat_at = ? WHERE id = 1 AND pid = ? AND hostname = ?`,
		d.now().Unix(), s.PID, s.Hostname)
	if err != nil {
		return fmt.Errorf("discovery heartbeat: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return errors.New("discovery heartbeat: the session was ended or replaced")
	}
	return nil
}

// KeepAlive beats the session's heartbeat every StaleAfter/5 until ctx
// ends (then it returns nil), or until a beat fails: the session was
// ended or replaced, and that error is returned.
func (d *Discovery) KeepAlive(ctx context.Context, s Session) error {
	t := time.NewTicker(d.beatEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := d.Beat(ctx, s); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
		}
	}
}

// Stop ends the session if it is still this one.
func (d *Discovery) Stop(ctx context.Context, s Session) error {
	_, err := d.db.Exec(ctx, `DELETE FROM pxe_discovery WHERE id = 1 AND pid = ? AND hostname = ?`, s.PID, s.Hostname)
	if err != nil {
		return fmt.Errorf("stop discovery: %w", err)
	}
	return nil
}

// Active returns the live session, if any.
func (d *Discovery) Active(ctx context.Context) (Session, bool, error) {
	s, err := scanSession(d.db.QueryRow(ctx, `SELECT `+sessionCols+` FROM pxe_discovery WHERE id = 1`))
	if errors.Is(err, sql.ErrNoRows) {
		return Session{}, false, nil
	}
	if err != nil {
		return Session{}, false, fmt.Errorf("read discovery session: %w", err)
	}
	if d.stale(s) {
		return Session{}, false, nil
	}
	return s, true, nil
}

// Discover returns the host for mac. A known MAC keeps its host whatever
// happens to discovery. An unknown one becomes the next host of the live
// session's appliance and rack (isNew) only if the session admits it: below
// its cap, and with an address from assign (called with the MAC; the host
// is created with that address, so no host exists without one). Otherwise
// the MAC is refused (ErrRefused, counted in the session) and nothing is
// kept. With no live session, or no assign (the HTTP boot server: only DHCP
// admits), it is ErrHostNotFound and the caller ignores the MAC.
func (d *Discovery) Discover(ctx context.Context, mac string, assign func(ctx context.Context) (string, error)) (h Host, isNew bool, err error) {
	m, err := CanonicalMAC(mac)
	if err != nil {
		return Host{}, false, err
	}
	// A race with another request for the same MAC or rank (ErrHostExists)
	// is looked at again.
	err = retry.Do(ctx, retry.Policy{Attempts: 5, Retryable: func(err error) bool { return errors.Is(err, ErrHostExists) }},
		func(int) error {
			var err error
			h, isNew, err = d.discoverOnce(ctx, m, assign)
			return err
		})
	if errors.Is(err, ErrHostExists) {
		return Host{}, false, fmt.Errorf("discover %s: kept racing with other inserts: %w", m, err)
	}
	return h, isNew, err
}

// discoverOnce is one try of Discover; ErrHostExists means it raced.
func (d *Discovery) discoverOnce(ctx context.Context, m string, assign func(ctx context.Context) (string, error)) (Host, bool, error) {
	h, err := d.hosts.ByMAC(ctx, m)
	if err == nil || !errors.Is(err, ErrHostNotFound) {
		return h, false, err
	}
	if assign == nil {
		return Host{}, false, fmt.Errorf("MAC %s: %w", m, ErrHostNotFound)
	}
	s, ok, err := d.Active(ctx)
	if err != nil {
		return Host{}, false, err
	}
	if !ok {
		return Host{}, false, fmt.Errorf("MAC %s with no discovery session: %w", m, ErrHostNotFound)
	}
	if s.Admitted >= s.Max {
		return Host{}, false, d.refuse(ctx, m, fmt.Sprintf("the session's cap of %d hosts is reached (discover --max)", s.Max))
	}
	ip, err := assign(ctx)
	if err != nil {
		return Host{}, false, d.refuse(ctx, m, "no address: "+err.Error())
	}
	err = d.db.InTx(ctx, func(tx *store.Tx) error {
		// The cap is checked again where it is counted: concurrent
		// MACs cannot overshoot it.
		res, err := tx.Exec(ctx, `UPDATE pxe_discovery SET admitted = admitted + 1 WHERE id = 1 AND admitted < max_hosts`)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("%w: the session's cap is reached or it ended", ErrRefused)
		}
		h, err = d.hosts.add(ctx, tx, AddHost{MAC: m, IP: ip, Appliance: s.Appliance, Rack: s.Rack, Rank: -1,
			Cluster: s.Cluster, Boot: BootInstall, DiscoveredBy: s.ID})
		return err
	})
	if err == nil {
		return h, true, nil
	}
	if errors.Is(err, ErrRefused) {
		return Host{}, false, d.refuse(ctx, m, err.Error())
	}
	return Host{}, false, err
}

// refuse counts a refused MAC in the live session and returns ErrRefused
// with why.
func (d *Discovery) refuse(ctx context.Context, mac, why string) error {
	if _, err := d.db.Exec(ctx, `UPDATE pxe_discovery SET refused = refused + 1, last_refused = ? WHERE id = 1`, mac+": "+why); err != nil {
		return fmt.Errorf("record refused MAC %s: %w", mac, err)
	}
	return fmt.Errorf("MAC %s: %w: %s", mac, ErrRefused, why)
}

// Since lists the hosts the session admitted, in the order they were
// named. Hosts added by hand while it runs are not its discoveries.
func (d *Discovery) Since(ctx context.Context, s Session) ([]Host, error) {
	return d.hosts.list(ctx, `WHERE discovered_by = ?`, s.ID)
}
