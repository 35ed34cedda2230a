package roll

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"ironbark/internal/atomicfile"
	"ironbark/internal/store"
)

// Registry is the frontend's set of rolls: the built-in ones (compiled in)
// and those added with `roll add` (archives kept in Dir, rows in the
// store), each enabled or not, plus the appliances the site added. Every
// change is checked by merging the resulting set first, so a change that
// would leave a broken graph is refused and nothing is half-registered.
type Registry struct {
	DB *store.DB
	// Dir keeps added roll archives; Dir/keys the trusted public keys
	// (private to the frontend: 0700 dirs, 0600 files, as the data dir).
	Dir string
	// Builtin are the rolls compiled into the binary, enabled unless
	// disabled; an added roll of the same name takes a built-in's place.
	Builtin []*Roll
	// Arch and OS are the frontend's; rolls for others are refused.
	// Zero means DefaultArch() and DefaultOS.
	Arch, OS string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// KeysDir is where the registry's trusted public keys live.
func (rg *Registry) KeysDir() string { return filepath.Join(rg.Dir, "keys") }

// RollInfo is one roll as `roll list` shows it.
type RollInfo struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	Release string `json:"release"`
	Arch    string `json:"arch"`
	OS      string `json:"os"`
	Summary string `json:"summary"`
	Enabled bool   `json:"enabled"`
	Builtin bool   `json:"builtin"`
	// File is the archive in the registry's directory ("" for built-in).
	File   string `json:"file,omitempty"`
	Digest string `json:"digest,omitempty"`
	// KeyID is the key that signed it, "insecure" when added with
	// --insecure-trust without a trusted signature, "" for built-in.
	KeyID string `json:"key_id,omitempty"`
}

// Errors the registry's callers map to messages.
var (
	ErrNoRoll  = errors.New("no such roll")
	ErrBuiltin = errors.New("built-in roll")
)

func (rg *Registry) target() (string, string) {
	a, o := rg.Arch, rg.OS
	if a == "" {
		a = DefaultArch()
	}
	if o == "" {
		o = DefaultOS
	}
	return a, o
}

func (rg *Registry) now() time.Time {
	if rg.Now != nil {
		return rg.Now()
	}
	return time.Now()
}

type entry struct {
	info RollInfo
	roll *Roll // loaded lazily for added rolls
}

// entries lists every roll: added ones, then built-in ones no added roll
// replaces, by name.
func (rg *Registry) entries(ctx context.Context) ([]*entry, error) {
	rows, err := rg.DB.Query(ctx, `SELECT name, version, release, arch, os, summary, file, digest, key_id, enabled FROM rolls`)
	if err != nil {
		return nil, fmt.Errorf("list rolls: %w", err)
	}
	defer rows.Close()
	byName := map[string]*entry{}
	for rows.Next() {
		var i RollInfo
		var en int
		if err := rows.Scan(&i.Name, &i.Version, &i.Release, &i.Arch, &i.OS, &i.Summary, &i.File, &i.Digest, &i.KeyID, &en); err != nil {
			return nil, fmt.Errorf("list rolls: %w", err)
		}
		i.Enabled = en != 0
		byName[i.Name] = &entry{info: i}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list rolls: %w", err)
	}
	state := map[string]bool{}
	srows, err := rg.DB.Query(ctx, `SELECT name, enabled FROM roll_builtin_state`)
	if err != nil {
		return nil, fmt.Errorf("list rolls: %w", err)
	}
	defer srows.Close()
	for srows.Next() {
		var n string
		var en int
		if err := srows.Scan(&n, &en); err != nil {
			return nil, err
		}
		state[n] = en != 0
	}
	if err := srows.Err(); err != nil {
		return nil, err
	}
	for _, r := range rg.Builtin {
		if _, added := byName[r.Name]; added {
			continue
		}
		en, ok := state[r.Name]
		byName[r.Name] = &entry{roll: r, info: RollInfo{Name: r.Name, Version: r.Version, Release: r.Release, Arch: r.Arch,
			OS: r.OS, Summary: r.Summary, Builtin: true, Enabled: en || !ok}}
	}
	var out []*entry
	for _, e := range byName {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].info.Name < out[j].info.Name })
	return out, nil
}

// load reads an added roll's archive back, checking it against the
// checksums recorded when it was added.
func (rg *Registry) load(e *entry) (*Roll, error) {
	if e.roll != nil {
		return e.roll, nil
	}
	a, err := ReadArchive(filepath.Join(rg.Dir, e.info.File))
	if err != nil {
		return nil, fmt.Errorf("roll %s: %w", e.info.Name, err)
	}
	if a.Digest != e.info.Digest {
		return nil, fmt.Errorf("roll %s: %s changed since it was added (sha256 %s, recorded %s)", e.info.Name, a.Path, a.Digest, e.info.Digest)
	}
	r, err := a.Roll()
	if err != nil {
		return nil, err
	}
	e.roll = r
	return r, nil
}

// List returns every roll with its state, by name.
func (rg *Registry) List(ctx context.Context) ([]RollInfo, error) {
	es, err := rg.entries(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]RollInfo, 0, len(es))
	for _, e := range es {
		out = append(out, e.info)
	}
	return out, nil
}

// merge merges the enabled rolls, with change applied to the set first
// (nil: as it is), and the site's appliances.
func (rg *Registry) merge(ctx context.Context, es []*entry, change func(name string, enabled bool) (*Roll, bool)) (*Graph, error) {
	var rolls []*Roll
	seen := map[string]bool{}
	for _, e := range es {
		seen[e.info.Name] = true
		var r *Roll
		en := e.info.Enabled
		if change != nil {
			var over *Roll
			over, en = change(e.info.Name, en)
			r = over
		}
		if !en {
			continue
		}
		if r == nil {
			var err error
			if r, err = rg.load(e); err != nil {
				return nil, err
			}
		}
		rolls = append(rolls, r)
	}
	if change != nil {
		// A roll not in the registry yet (being added).
		if r, en := change("", false); r != nil && !seen[r.Name] && en {
			rolls = append(rolls, r)
		}
	}
	g, err := Merge(rolls...)
	if err != nil {
		return nil, err
	}
	apps, err := rg.siteAppliances(ctx)
	if err != nil {
		return nil, err
	}
	for _, a := range apps {
		if err := g.AddAppliance(a); err != nil {
			return nil, fmt.Errorf("site %w", err)
		}
	}
	return g, nil
}

// Graph merges the enabled rolls and the site's appliances.
func (rg *Registry) Graph(ctx context.Context) (*Graph, error) {
	es, err := rg.entries(ctx)
	if err != nil {
		return nil, err
	}
	return rg.merge(ctx, es, nil)
}

// AddOptions say how to add a roll.
type AddOptions struct {
	// InsecureTrust adds a roll that is unsigned or signed by an
	// untrusted key (its checksums must still match).
	InsecureTrust bool
	// Enable enables it at once. A roll replacing one of the same name
	// keeps that one's state.
	Enable bool
}

// Add verifies the archive at file against the trusted keys, checks its
// target and that the enabled rolls still merge with it, keeps a copy in
// Dir and records it. On any error nothing is recorded or kept.
func (rg *Registry) Add(ctx context.Context, file string, opt AddOptions) (RollInfo, error) {
	keys, err := TrustedKeys(rg.KeysDir())
	if err != nil {
		return RollInfo{}, err
	}
	a, err := ReadArchive(file)
	if err != nil {
		return RollInfo{}, err
	}
	keyID := "insecure"
	if id, verr := a.Verify(keys); verr == nil {
		keyID = id
	} else if !opt.InsecureTrust || !(errors.Is(verr, ErrUnsigned) || errors.Is(verr, ErrUnknownKey)) {
		return RollInfo{}, fmt.Errorf("roll add: %w", verr)
	} else if err := a.CheckSums(); err != nil {
		return RollInfo{}, fmt.Errorf("roll add: %w", err)
	}
	r, err := a.Roll()
	if err != nil {
		return RollInfo{}, fmt.Errorf("roll add: %w", err)
	}
	if err := r.CheckTarget(rg.target()); err != nil {
		return RollInfo{}, fmt.Errorf("roll add: %w", err)
	}
	es, err := rg.entries(ctx)
	if err != nil {
		return RollInfo{}, err
	}
	enabled := opt.Enable
	var old *entry
	for _, e := range es {
		if e.info.Name == r.Name {
			old = e
			enabled = enabled || e.info.Enabled
		}
	}
	// The set must merge with the new roll in it, enabled or not, so that
	// enabling it later cannot fail on what is known now.
	if _, err := rg.merge(ctx, es, func(name string, en bool) (*Roll, bool) {
		if name == r.Name || name == "" {
			return r, true
		}
		return nil, en
	}); err != nil {
		return RollInfo{}, fmt.Errorf("roll add %s: %w", r.Name, err)
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return RollInfo{}, err
	}
	sum := sha256.Sum256(data)
	if hex.EncodeToString(sum[:]) != a.Digest {
		return RollInfo{}, fmt.Errorf("roll add: %s changed while it was read", file)
	}
	info := RollInfo{Name: r.Name, Version: r.Version, Release: r.Release, Arch: r.Arch, OS: r.OS, Summary: r.Summary,
		Enabled: enabled, Digest: a.Digest, KeyID: keyID,
		File: fmt.Sprintf("%s-%s-%s.%s.%s.tar", r.Name, r.Version, r.Release, r.Arch, a.Digest[:12])}
	if err := os.MkdirAll(rg.Dir, 0o700); err != nil {
		return RollInfo{}, fmt.Errorf("roll add: %w", err)
	}
	dst := filepath.Join(rg.Dir, info.File)
	if err := atomicfile.Write(dst, data, 0o600); err != nil {
		return RollInfo{}, fmt.Errorf("roll add: %w", err)
	}
	err = rg.DB.InTx(ctx, func(tx *store.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM rolls WHERE name = ?`, r.Name); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO rolls (name, version, release, arch, os, summary, file, digest, key_id, enabled, added_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, info.Name, info.Version, info.Release, info.Arch, info.OS, info.Summary,
			info.File, info.Digest, info.KeyID, boolInt(info.Enabled), rg.now().Unix())
		return err
	})
	if err != nil {
		if old == nil || old.info.File != info.File {
			os.Remove(dst)
		}
		return RollInfo{}, fmt.Errorf("roll add %s: %w", r.Name, err)
	}
	if old != nil && old.info.File != "" && old.info.File != info.File {
		os.Remove(filepath.Join(rg.Dir, old.info.File))
	}
	return info, nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// SetEnabled enables or disables a roll, if the set still merges after.
func (rg *Registry) SetEnabled(ctx context.Context, name string, enabled bool) error {
	es, err := rg.entries(ctx)
	if err != nil {
		return err
	}
	var e *entry
	for _, x := range es {
		if x.info.Name == name {
			e = x
		}
	}
	if e == nil {
		return fmt.Errorf("roll %s: %w", name, ErrNoRoll)
	}
	verb := "enable"
	if !enabled {
		verb = "disable"
	}
	if _, err := rg.merge(ctx, es, func(n string, en bool) (*Roll, bool) {
		if n == name {
			return nil, enabled
		}
		return nil, en
	}); err != nil {
		return fmt.Errorf("%s roll %s: the enabled rolls would not merge: %w", verb, name, err)
	}
	if e.info.Builtin {
		return rg.DB.InTx(ctx, func(tx *store.Tx) error {
			if _, err := tx.Exec(ctx, `DELETE FROM roll_builtin_state WHERE name = ?`, name); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `INSERT INTO roll_builtin_state (name, enabled) VALUES (?, ?)`, name, boolInt(enabled))
			return err
		})
	}
	if _, err := rg.DB.Exec(ctx, `UPDATE rolls SET enabled = ? WHERE name = ?`, boolInt(enabled), name); err != nil {
		return fmt.Errorf("%s roll %s: %w", verb, name, err)
	}
	return nil
}

// Remove forgets an added roll and deletes its archive. A built-in roll
// cannot be removed, only disabled. Removing a roll the enabled set needs
// is refused.
func (rg *Registry) Remove(ctx context.Context, name string) error {
	es, err := rg.entries(ctx)
	if err != nil {
		return err
	}
	var e *entry
	for _, x := range es {
		if x.info.Name == name {
			e = x
		}
	}
	if e == nil {
		return fmt.Errorf("roll %s: %w", name, ErrNoRoll)
	}
	if e.info.Builtin {
		return fmt.Errorf("roll %s: %w: disable it instead", name, ErrBuiltin)
	}
	// What the set becomes: without it, and with a built-in of that name
	// back in its place.
	var builtin *Roll
	for _, r := range rg.Builtin {
		if r.Name == name {
			builtin = r
		}
	}
	if _, err := rg.merge(ctx, es, func(n string, en bool) (*Roll, bool) {
		if n == name {
			return builtin, builtin != nil && rg.builtinEnabled(ctx, name)
		}
		return nil, en
	}); err != nil {
		return fmt.Errorf("remove roll %s: the enabled rolls would not merge: %w", name, err)
	}
	res, err := rg.DB.Exec(ctx, `DELETE FROM rolls WHERE name = ?`, name)
	if err != nil {
		return fmt.Errorf("remove roll %s: %w", name, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("roll %s: %w", name, ErrNoRoll)
	}
	if err := os.Remove(filepath.Join(rg.Dir, e.info.File)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove roll %s: %w", name, err)
	}
	return nil
}

func (rg *Registry) builtinEnabled(ctx context.Context, name string) bool {
	var en int
	err := rg.DB.QueryRow(ctx, `SELECT enabled FROM roll_builtin_state WHERE name = ?`, name).Scan(&en)
	return errors.Is(err, sql.ErrNoRows) || (err == nil && en != 0)
}

func (rg *Registry) siteAppliances(ctx context.Context) ([]Appliance, error) {
	rows, err := rg.DB.Query(ctx, `SELECT name, node, summary FROM roll_appliances ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("site appliances: %w", err)
	}
	defer rows.Close()
	var out []Appliance
	for rows.Next() {
		var a Appliance
		if err := rows.Scan(&a.Name, &a.Node, &a.Summary); err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// AddAppliance records an appliance of the site's: a name and the graph
// node its walk starts from, which an enabled roll must have.
func (rg *Registry) AddAppliance(ctx context.Context, a Appliance) error {
	g, err := rg.Graph(ctx)
	if err != nil {
		return err
	}
	a.Roll = ""
	if err := g.AddAppliance(a); err != nil {
		return err
	}
	if a.Node == "" {
		a.Node = a.Name
	}
	_, err = rg.DB.Exec(ctx, `INSERT INTO roll_appliances (name, node, summary, added_at) VALUES (?, ?, ?, ?)`,
		a.Name, a.Node, a.Summary, rg.now().Unix())
	if store.IsUniqueViolation(err) {
		return fmt.Errorf("appliance %s: %w: already added", a.Name, ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("add appliance %s: %w", a.Name, err)
	}
	return nil
}

// ApplianceProfile is the profile an appliance's image is built from: the
// enabled rolls' graph walked with the appliance's attributes (global < os
// < appliance, the rolls' defaults under each; no host).
func (rg *Registry) ApplianceProfile(ctx context.Context, appliance string) (*Profile, error) {
	g, err := rg.Graph(ctx)
	if err != nil {
		return nil, err
	}
	if _, ok := g.Appliance(appliance); !ok {
		return nil, fmt.Errorf("appliance %s: %w", appliance, ErrNoAppliance)
	}
	_, o := rg.target()
	as, err := NewAttrs(rg.DB).Resolve(ctx, g, Target{Host: Host{Appliance: appliance}, OS: o})
	if err != nil {
		return nil, err
	}
	return g.Profile(appliance, AttrMap(as))
}
