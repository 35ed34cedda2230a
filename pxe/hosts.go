package pxe

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"regexp"
	"strings"
	"time"

	"ironbark/internal/store"
	"ironbark/pxe/bootapi"
)

// BootAction is what a host does the next time it PXE-boots.
type BootAction string

const (
	BootInstall BootAction = "install" // boot the installer, reinstall the disk
	BootOS      BootAction = "os"      // boot the installed system from the local disk
	BootRescue  BootAction = "rescue"  // boot the installer image without touching the disk
)

// ParseBootAction validates a boot action name.
func ParseBootAction(s string) (BootAction, error) {
	switch a := BootAction(s); a {
	case BootInstall, BootOS, BootRescue:
		return a, nil
	}
	return "", fmt.Errorf("boot action %q: want install, os or rescue", s)
}

// Install states recorded for a host.
const (
	InstallNone       = ""
	InstallInstalling = "installing"
	InstallInstalled  = "installed"
	InstallFailed     = "failed"
)

// Host is one row of the hosts table.
type Host struct {
	Name       string
	MAC        string // canonical lower-case xx:xx:..
	IP         string // static lease; "" until one is given
	Appliance  string
	Rack, Rank int
	Cluster    string
	Boot       BootAction
	// Install* describe the last install attempt.
	InstallState    string
	InstallProgress int
	InstallStep     string
	InstallError    string
	InstallAttempt  string
	Created         time.Time
	Updated         time.Time
}

// HostName is the Rocks name of an appliance's node: compute-0-3.
func HostName(appliance string, rack, rank int) string {
	return fmt.Sprintf("%s-%d-%d", appliance, rack, rank)
}

// Errors callers map to messages.
var (
	ErrHostNotFound = errors.New("host not found")
	ErrHostExists   = errors.New("host already exists")
)

var applianceRE = regexp.MustCompile(`^[a-z][a-z0-9]*(-[a-z0-9]+)*$`)

// ValidAppliance reports whether s can be an appliance name (and so the
// first part of a host name).
func ValidAppliance(s string) error {
	if !applianceRE.MatchString(s) || len(s) > 31 {
		return fmt.Errorf("appliance %q: want up to 31 lower-case letters, digits and inner dashes (compute-kvm), starting with a letter", s)
	}
	return nil
}

// CanonicalMAC parses a MAC and returns it as lower-case colon form.
func CanonicalMAC(s string) (string, error) {
	hw, err := net.ParseMAC(strings.TrimSpace(s))
	if err != nil || len(hw) != 6 {
		return "", fmt.Errorf("MAC %q: not an Ethernet address", s)
	}
	return hw.String(), nil
}

// Hosts is the hosts table.
type Hosts struct {
	db  *store.DB
	now func() time.Time
}

// NewHosts returns the hosts table on db (migrated with Migrations).
func NewHosts(db *store.DB) *Hosts { return &Hosts{db: db, now: time.Now} }

const hostCols = `name, mac, ip, appliance, rack, rank, cluster, boot_action,
	install_state, install_progress, install_step, install_error, install_attempt, created_at, updated_at`

func scanHost(row interface{ Scan(...any) error }) (Host, error) {
	var h Host
	var boot string
	var created, updated int64
	err := row.Scan(&h.Name, &h.MAC, &h.IP, &h.Appliance, &h.Rack, &h.Rank, &h.Cluster, &boot,
		&h.InstallState, &h.InstallProgress, &h.InstallStep, &h.InstallError, &h.InstallAttempt, &created, &updated)
	h.Boot = BootAction(boot)
	h.Created, h.Updated = time.Unix(created, 0), time.Unix(updated, 0)
	return h, err
}

// AddHost is what `host add` and discovery know about a new host. Rank < 0
// means the next free rank in the rack; Name "" means the Rocks name.
type AddHost struct {
	Name      string
	MAC       string
	IP        string
	Appliance string
	Rack      int
	Rank      int
	Cluster   string
	Boot      BootAction
	// DiscoveredBy is the ID of the discovery session that admits the
	// host; "" for a host added by hand.
	DiscoveredBy string
}

// Add inserts a host and returns it as stored.
func (hs *Hosts) Add(ctx context.Context, a AddHost) (Host, error) {
	var h Host
	err := hs.db.InTx(ctx, func(tx *store.Tx) error {
		var err error
		h, err = hs.add(ctx, tx, a)
		return err
	})
	return h, err
}

func (hs *Hosts) add(ctx context.Context, q store.Querier, a AddHost) (Host, error) {
	mac, err := CanonicalMAC(a.MAC)
	if err != nil {
		return Host{}, err
	}
	if err := ValidAppliance(a.Appliance); err != nil {
		return Host{}, err
	}
	if a.IP != "" && net.ParseIP(a.IP).To4() == nil {
		return Host{}, fmt.Errorf("IP %q: not an IPv4 address", a.IP)
	}
	if a.Rack < 0 {
		return Host{}, fmt.Errorf("rack %d: must be >= 0", a.Rack)
	}
	if a.Boot == "" {
		a.Boot = BootInstall
	}
	if _, err := ParseBootAction(string(a.Boot)); err != nil {
		return Host{}, err
	}
	if a.Rank < 0 {
		var max sql.NullInt64
		if err := q.QueryRow(ctx, `SELECT MAX(rank) FROM pxe_hosts WHERE appliance = ? AND rack = ?`,
			a.Appliance, a.Rack).Scan(&max); err != nil {
			return Host{}, fmt.Errorf("next rank: %w", err)
		}
		a.Rank = 0
		if max.Valid {
			a.Rank = int(max.Int64) + 1
		}
	}
	if a.Name == "" {
		a.Name = HostName(a.Appliance, a.Rack, a.Rank)
	}
	now := hs.now().Unix()
	_, err = q.Exec(ctx, `INSERT INTO pxe_hosts (name, mac, ip, appliance, rack, rank, cluster, boot_action,
		discovered_by, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		a.Name, mac, a.IP, a.Appliance, a.Rack, a.Rank, a.Cluster, string(a.Boot), a.DiscoveredBy, now, now)
	if store.IsUniqueViolation(err) {
		return Host{}, fmt.Errorf("add host %s (%s): %w: name, MAC, IP or rack/rank taken", a.Name, mac, ErrHostExists)
	}
	if err != nil {
		return Host{}, fmt.Errorf("add host %s: %w", a.Name, err)
	}
	return hs.get(ctx, q, `name = ?`, a.Name)
}

func (hs *Hosts) get(ctx context.Context, q store.Querier, where string, arg any) (Host, error) {
	h, err := scanHost(q.QueryRow(ctx, `SELECT `+hostCols+` FROM pxe_hosts WHERE `+where, arg))
	if errors.Is(err, sql.ErrNoRows) {
		return Host{}, fmt.Errorf("%v: %w", arg, ErrHostNotFound)
	}
	if err != nil {
		return Host{}, fmt.Errorf("host %v: %w", arg, err)
	}
	return h, nil
}

// Get returns the host with that name.
func (hs *Hosts) Get(ctx context.Context, name string) (Host, error) {
	return hs.get(ctx, hs.db, `name = ?`, name)
}

// ByMAC returns the host with that MAC.
func (hs *Hosts) ByMAC(ctx context.Context, mac string) (Host, error) {
	m, err := CanonicalMAC(mac)
	if err != nil {
		return Host{}, err
	}
	return hs.get(ctx, hs.db, `mac = ?`, m)
}

// List returns all hosts ordered by appliance, rack and rank.
func (hs *Hosts) List(ctx context.Context) ([]Host, error) {
	return hs.list(ctx, "")
}

// list returns the hosts matching where (with its args), in name order.
func (hs *Hosts) list(ctx context.Context, where string, args ...any) ([]Host, error) {
	rows, err := hs.db.Query(ctx, `SELECT `+hostCols+` FROM pxe_hosts `+where+` ORDER BY appliance, rack, rank, name`, args...)
	if err != nil {
		return nil, fmt.Errorf("list hosts: %w", err)
	}
	defer rows.Close()
	var out []Host
	for rows.Next() {
		h, err := scanHost(rows)
		if err != nil {
			return nil, fmt.Errorf("list hosts: %w", err)
		}
		out = append(out, h)
	}
	return out, rows.Err()
}

// Remove deletes a host. Its DHCP lease, if any, is the DHCP server's to
// expire.
func (hs *Hosts) Remove(ctx context.Context, name string) error {
	res, err := hs.db.Exec(ctx, `DELETE FROM pxe_hosts WHERE name = ?`, name)
	if err != nil {
		return fmt.Errorf("remove host %s: %w", name, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("remove host %s: %w", name, ErrHostNotFound)
	}
	return nil
}

// SetBoot sets a host's next boot action. Setting install clears the last
// install's result so `host list` shows the new attempt's progress.
func (hs *Hosts) SetBoot(ctx context.Context, name string, a BootAction) error {
	if _, err := ParseBootAction(string(a)); err != nil {
		return err
	}
	q := `UPDATE pxe_hosts SET boot_action = ?, updated_at = ? WHERE name = ?`
	if a == BootInstall {
		q = `UPDATE pxe_hosts SET boot_action = ?, updated_at = ?, install_state = '', install_progress = 0,
			install_step = '', install_error = '' WHERE name = ?`
	}
	res, err := hs.db.Exec(ctx, q, string(a), hs.now().Unix(), name)
	if err != nil {
		return fmt.Errorf("set-boot %s: %w", name, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("set-boot %s: %w", name, ErrHostNotFound)
	}
	return nil
}

// SetIP records a host's static address (from the DHCP pool at discovery).
func (hs *Hosts) SetIP(ctx context.Context, name, ip string) error {
	_, err := hs.db.Exec(ctx, `UPDATE pxe_hosts SET ip = ?, updated_at = ? WHERE name = ?`, ip, hs.now().Unix(), name)
	if store.IsUniqueViolation(err) {
		return fmt.Errorf("set ip of %s to %s: address in use by another host", name, ip)
	}
	if err != nil {
		return fmt.Errorf("set ip of %s: %w", name, err)
	}
	return nil
}

// StartInstall records a new install attempt when the installer's boot
// script is served and returns its id. Reports carrying an older attempt
// id are ignored, so a node that vanished and came back cannot be marked
// done by its previous run.
func (hs *Hosts) StartInstall(ctx context.Context, name, attempt string) error {
	res, err := hs.db.Exec(ctx, `UPDATE pxe_hosts SET install_state = ?, install_progress = 0, install_step = 'booting installer',
		install_error = '', install_attempt = ?, updated_at = ? WHERE name = ? AND boot_action = ?`,
		InstallInstalling, attempt, hs.now().Unix(), name, string(BootInstall))
	if err != nil {
		return fmt.Errorf("start install of %s: %w", name, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("start install of %s: %w (or its boot action is not install)", name, ErrHostNotFound)
	}
	return nil
}

// ErrStaleAttempt is returned for a progress report of an attempt that is
// no longer the host's current one.
var ErrStaleAttempt = errors.New("install attempt is not the current one")

// Report records an installer's progress. Done flips the boot action to
// os; failed keeps install and records why.
func (hs *Hosts) Report(ctx context.Context, name, attempt, state string, percent int, step, why string) error {
	return hs.db.InTx(ctx, func(tx *store.Tx) error {
		h, err := hs.get(ctx, tx, `name = ?`, name)
		if err != nil {
			return err
		}
		if attempt == "" || h.InstallAttempt != attempt {
			return fmt.Errorf("report for %s attempt %q (current %q): %w", name, attempt, h.InstallAttempt, ErrStaleAttempt)
		}
		percent = min(max(percent, 0), 100)
		now := hs.now().Unix()
		switch state {
		case bootapi.StateRunning:
			_, err = tx.Exec(ctx, `UPDATE pxe_hosts SET install_state = ?, install_progress = ?, install_step = ?,
				updated_at = ? WHERE name = ?`, InstallInstalling, percent, step, now, name)
		case bootapi.StateDone:
			_, err = tx.Exec(ctx, `UPDATE pxe_hosts SET install_state = ?, install_progress = 100, install_step = ?,
				install_error = '', boot_action = ?, updated_at = ? WHERE name = ?`,
				InstallInstalled, step, string(BootOS), now, name)
		case bootapi.StateFailed:
			if why == "" {
				why = "installer reported failure without a reason"
			}
			_, err = tx.Exec(ctx, `UPDATE pxe_hosts SET install_state = ?, install_step = ?, install_error = ?,
				boot_action = ?, updated_at = ? WHERE name = ?`,
				InstallFailed, step, why, string(BootInstall), now, name)
		default:
			return fmt.Errorf("report for %s: unknown state %q", name, state)
		}
		if err != nil {
			return fmt.Errorf("report for %s: %w", name, err)
		}
		return nil
	})
}

// Status is a host's install state in a few words, for lists and screens.
func (h Host) Status() string {
	switch h.InstallState {
	case InstallInstalling:
		s := fmt.Sprintf("installing %d%%", h.InstallProgress)
		if h.InstallStep != "" {
			s += " " + h.InstallStep
		}
		return s
	case InstallInstalled:
		return "installed"
	case InstallFailed:
		return "failed: " + h.InstallError
	}
	if h.Boot == BootInstall {
		return "waiting to install"
	}
	return "-"
}
