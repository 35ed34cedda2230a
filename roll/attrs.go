package roll

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"unicode/utf8"

	"ironbark/internal/sshkeys"
	"ironbark/internal/store"
)

// Scope is a level of Rocks' attribute chain; a higher one wins.
type Scope string

// The scopes, lowest first.
const (
	ScopeGlobal    Scope = "global"
	ScopeOS        Scope = "os"
	ScopeAppliance Scope = "appliance"
	ScopeRack      Scope = "rack"
	ScopeHost      Scope = "host"
)

// Letter is the scope's one-letter source mark, as `rocks list host attr`
// prints it (I, for intrinsic, is not a scope one can set).
func (s Scope) Letter() string {
	switch s {
	case ScopeGlobal:
		return "G"
	case ScopeOS:
		return "O"
	case ScopeAppliance:
		return "A"
	case ScopeRack:
		return "R"
	case ScopeHost:
		return "H"
	}
	return "?"
}

// Intrinsic attributes come from what the frontend knows of a host; they
// cannot be set. arch, os and release are intrinsic too, but settable: a
// host may differ from the frontend's defaults.
var intrinsic = []string{"hostname", "rack", "rank", "appliance", "cluster"}

// SSHKeysAttr holds the OpenSSH public keys (authorized_keys lines) root
// accepts on every installed node. The PXE installer writes the host's
// resolved value into the installed root's ~/.ssh/authorized_keys at each
// install, so a change reaches a node at its next install without an
// image rebuild.
const SSHKeysAttr = "ssh_authorized_keys"

// checkValue checks the values of attributes with a known format.
func checkValue(name, value string) error {
	if name == SSHKeysAttr {
		if _, err := sshkeys.Parse(value); err != nil {
			return fmt.Errorf("attribute %s: %w", name, err)
		}
	}
	return nil
}

// ErrIntrinsic is returned (wrapped) for setting an intrinsic attribute.
var ErrIntrinsic = errors.New("intrinsic attribute")

// ErrNoAttr is returned (wrapped) for removing an attribute not set.
var ErrNoAttr = errors.New("attribute not set")

// Attrs stores attributes at each scope.
type Attrs struct{ db *store.DB }

// NewAttrs returns the attribute store over db (migrated with Migrations).
func NewAttrs(db *store.DB) *Attrs { return &Attrs{db: db} }

// maxAttrValue bounds a value: attributes are configuration, not files.
const maxAttrValue = 64 << 10

func checkScope(scope Scope, target string) error {
	switch scope {
	case ScopeGlobal:
		if target != "" {
			return fmt.Errorf("global attributes take no target (have %q)", target)
		}
	case ScopeRack:
		if n, err := strconv.Atoi(target); err != nil || n < 0 || strconv.Itoa(n) != target {
			return fmt.Errorf("rack %q: want a number >= 0", target)
		}
	case ScopeOS, ScopeAppliance, ScopeHost:
		if target == "" {
			return fmt.Errorf("%s attributes need a %s", scope, scope)
		}
	default:
		return fmt.Errorf("scope %q: want global, os, appliance, rack or host", scope)
	}
	return nil
}

// Set sets name=value at scope for target ("" for global; the os, the
// appliance, the rack number or the host name).
func (a *Attrs) Set(ctx context.Context, scope Scope, target, name, value string) error {
	if err := checkScope(scope, target); err != nil {
		return err
	}
	if err := ValidAttrName(name); err != nil {
		return err
	}
	if slices.Contains(intrinsic, name) {
		return fmt.Errorf("attribute %s: %w: it comes from the host record", name, ErrIntrinsic)
	}
	if len(value) > maxAttrValue || !utf8.ValidString(value) {
		return fmt.Errorf("attribute %s: want UTF-8 text up to %d bytes", name, maxAttrValue)
	}
	if err := checkValue(name, value); err != nil {
		return err
	}
	return a.db.InTx(ctx, func(tx *store.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM roll_attributes WHERE scope = ? AND target = ? AND name = ?`,
			string(scope), target, name); err != nil {
			return fmt.Errorf("set attribute %s: %w", name, err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO roll_attributes (scope, target, name, value) VALUES (?, ?, ?, ?)`,
			string(scope), target, name, value); err != nil {
			return fmt.Errorf("set attribute %s: %w", name, err)
		}
		return nil
	})
}

// Remove removes name at scope for target.
func (a *Attrs) Remove(ctx context.Context, scope Scope, target, name string) error {
	if err := checkScope(scope, target); err != nil {
		return err
	}
	res, err := a.db.Exec(ctx, `DELETE FROM roll_attributes WHERE scope = ? AND target = ? AND name = ?`,
		string(scope), target, name)
	if err != nil {
		return fmt.Errorf("remove attribute %s: %w", name, err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		return fmt.Errorf("attribute %s at %s %s: %w", name, scope, target, ErrNoAttr)
	}
	return nil
}

// Get returns the attributes set at scope for target.
func (a *Attrs) Get(ctx context.Context, scope Scope, target string) (map[string]string, error) {
	rows, err := a.db.Query(ctx, `SELECT name, value FROM roll_attributes WHERE scope = ? AND target = ?`, string(scope), target)
	if err != nil {
		return nil, fmt.Errorf("attributes of %s %s: %w", scope, target, err)
	}
	defer rows.Close()
	m := map[string]string{}
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			return nil, err
		}
		m[k] = v
	}
	return m, rows.Err()
}

// RemoveTarget drops every attribute of one target (a removed host).
func (a *Attrs) RemoveTarget(ctx context.Context, scope Scope, target string) error {
	_, err := a.db.Exec(ctx, `DELETE FROM roll_attributes WHERE scope = ? AND target = ?`, string(scope), target)
	return err
}

// Attr is one resolved attribute: its value and where it came from.
type Attr struct {
	Name   string `json:"name"`
	Value  string `json:"value"`
	Source string `json:"source"` // G, O, A, R, H or I
	// From says more: "roll base" for a roll's default, "frontend" for
	// an intrinsic default.
	From string `json:"from,omitempty"`
}

// Host is what the chain needs to know of a host: its intrinsic
// attributes.
type Host struct {
	Name      string
	Appliance string
	Rack      int
	Rank      int
	Cluster   string
}

// Target is what to resolve the chain for: an appliance alone (Host.Name
// "") or one host. OS is the host's OS (DefaultOS when "").
type Target struct {
	Host
	OS string
}

// Resolve walks the chain global < os < appliance < rack < host for t,
// with the rolls' defaults (g) under the stored values of their scope and
// the intrinsic attributes on top, and returns every attribute with its
// source, by name.
func (a *Attrs) Resolve(ctx context.Context, g *Graph, t Target) ([]Attr, error) {
	out := map[string]Attr{}
	put := func(m map[string]string, src, from string) {
		for k, v := range m {
			out[k] = Attr{Name: k, Value: v, Source: src, From: from}
		}
	}
	os := t.OS
	if os == "" {
		os = DefaultOS
	}
	// Intrinsic defaults that a scope may override.
	put(map[string]string{"arch": DefaultArch(), "os": os, "release": DefaultRelease}, "I", "frontend")
	if g != nil {
		for _, rn := range g.names {
			r := g.rolls[rn]
			put(r.Attrs, "G", "roll "+rn)
		}
	}
	load := func(s Scope, target string) error {
		m, err := a.Get(ctx, s, target)
		if err != nil {
			return err
		}
		put(m, s.Letter(), "")
		return nil
	}
	if err := load(ScopeGlobal, ""); err != nil {
		return nil, err
	}
	if err := load(ScopeOS, os); err != nil {
		return nil, err
	}
	if t.Appliance != "" {
		if g != nil {
			if ap, ok := g.Appliance(t.Appliance); ok {
				from := "roll " + ap.Roll
				if ap.Roll == "" {
					from = "site"
				}
				put(ap.Attrs, "A", from)
			}
		}
		if err := load(ScopeAppliance, t.Appliance); err != nil {
			return nil, err
		}
	}
	if t.Name != "" {
		if err := load(ScopeRack, strconv.Itoa(t.Rack)); err != nil {
			return nil, err
		}
		if err := load(ScopeHost, t.Name); err != nil {
			return nil, err
		}
		put(map[string]string{"hostname": t.Name, "rack": strconv.Itoa(t.Rack), "rank": strconv.Itoa(t.Rank)}, "I", "")
		if t.Cluster != "" {
			put(map[string]string{"cluster": t.Cluster}, "I", "")
		}
	}
	if t.Appliance != "" {
		put(map[string]string{"appliance": t.Appliance}, "I", "")
	}
	r := make([]Attr, 0, len(out))
	for _, k := range slices.Sorted(maps.Keys(out)) {
		r = append(r, out[k])
	}
	return r, nil
}

// AttrMap turns resolved attributes into the map a walk takes.
func AttrMap(as []Attr) map[string]string {
	m := make(map[string]string, len(as))
	for _, a := range as {
		m[a.Name] = a.Value
	}
	return m
}
