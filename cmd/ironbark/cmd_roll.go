package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"flag"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"

	"ironbark/internal/store"
	"ironbark/pxe"
	"ironbark/roll"
	"ironbark/roll/builtin"
)

// builtinRolls are the rolls compiled into the binary.
func builtinRolls() ([]*roll.Roll, error) { return roll.LoadEach(builtin.FS(), "builtin") }

// openRolls opens the store with the roll (and pxe, for hosts) tables and
// the data dir's roll registry.
func (e *env) openRolls(ctx context.Context) (*store.DB, *roll.Registry, error) {
	db, err := e.openStore(ctx, append(pxe.Migrations(), roll.Migrations()...))
	if err != nil {
		return nil, nil, err
	}
	bs, err := builtinRolls()
	if err != nil {
		return nil, nil, err
	}
	return db, &roll.Registry{DB: db, Dir: filepath.Join(e.dataDir, "rolls"), Builtin: bs}, nil
}

func rollCreate(fs *flag.FlagSet) runFunc {
	out := fs.String("out", "", "archive to write (required)")
	sign := fs.String("sign", "", "private key to sign with (from roll key create)")
	return func(ctx context.Context, e *env) error {
		if *out == "" {
			return e.usagef("roll create: --out is required")
		}
		var key ed25519.PrivateKey
		if *sign != "" {
			k, err := roll.ReadPrivateKey(*sign)
			if err != nil {
				return err
			}
			key = k
		}
		r, err := roll.Create(e.args[0], *out, key)
		if err != nil {
			return err
		}
		how := "unsigned"
		if key != nil {
			how = "signed"
		}
		e.say("roll %s %s-%s (%s, %s) written to %s, %s", r.Name, r.Version, r.Release, r.Arch, r.OS, *out, how)
		return nil
	}
}

func rollKeyCreate(fs *flag.FlagSet) runFunc {
	return func(ctx context.Context, e *env) error {
		pub, err := roll.GenerateKey(e.args[0])
		if err != nil {
			return err
		}
		fmt.Fprintln(e.stdout, roll.KeyID(pub))
		e.say("signing key %s, public key %s.pub: trust it on a frontend with `ironbark roll key trust %s.pub`", e.args[0], e.args[0], e.args[0])
		return nil
	}
}

func rollKeyTrust(fs *flag.FlagSet) runFunc {
	return func(ctx context.Context, e *env) error {
		_, rg, err := e.openRolls(ctx)
		if err != nil {
			return err
		}
		id, err := roll.Trust(rg.KeysDir(), e.args[0])
		if err != nil {
			return err
		}
		fmt.Fprintln(e.stdout, id)
		e.say("rolls signed by key %s are trusted", id)
		return nil
	}
}

func rollAdd(fs *flag.FlagSet) runFunc {
	var opt roll.AddOptions
	fs.BoolVar(&opt.InsecureTrust, "insecure-trust", false, "add it even if unsigned or signed by a key this frontend does not trust")
	fs.BoolVar(&opt.Enable, "enable", false, "enable it at once")
	return func(ctx context.Context, e *env) error {
		_, rg, err := e.openRolls(ctx)
		if err != nil {
			return err
		}
		info, err := rg.Add(ctx, e.args[0], opt)
		if err != nil {
			return err
		}
		state := "disabled (roll enable " + info.Name + ")"
		if info.Enabled {
			state = "enabled"
		}
		e.say("added roll %s %s-%s, key %s, %s", info.Name, info.Version, info.Release, info.KeyID, state)
		return nil
	}
}

type rollRow roll.RollInfo

func (r rollRow) cells() []string {
	en, src := "no", "added"
	if r.Enabled {
		en = "yes"
	}
	if r.Builtin {
		src = "builtin"
	} else if r.KeyID != "" {
		src = "key " + r.KeyID
	}
	return []string{r.Name, r.Version, r.Release, r.Arch, r.OS, en, src, r.Summary}
}

func rollList(fs *flag.FlagSet) runFunc {
	return func(ctx context.Context, e *env) error {
		_, rg, err := e.openRolls(ctx)
		if err != nil {
			return err
		}
		is, err := rg.List(ctx)
		if err != nil {
			return err
		}
		rows := make([]rollRow, len(is))
		for i, x := range is {
			rows[i] = rollRow(x)
		}
		return printList(e, []string{"NAME", "VERSION", "RELEASE", "ARCH", "OS", "ENABLED", "SOURCE", "SUMMARY"}, rows)
	}
}

func rollSetEnabled(enabled bool) func(fs *flag.FlagSet) runFunc {
	return func(fs *flag.FlagSet) runFunc {
		return func(ctx context.Context, e *env) error {
			_, rg, err := e.openRolls(ctx)
			if err != nil {
				return err
			}
			if err := rg.SetEnabled(ctx, e.args[0], enabled); err != nil {
				return err
			}
			if enabled {
				e.say("roll %s enabled", e.args[0])
			} else {
				e.say("roll %s disabled", e.args[0])
			}
			return nil
		}
	}
}

func rollRemove(fs *flag.FlagSet) runFunc {
	return func(ctx context.Context, e *env) error {
		_, rg, err := e.openRolls(ctx)
		if err != nil {
			return err
		}
		if err := rg.Remove(ctx, e.args[0]); err != nil {
			return err
		}
		e.say("roll %s removed", e.args[0])
		return nil
	}
}

type applianceRow struct {
	Name    string `json:"name"`
	Node    string `json:"node"`
	Roll    string `json:"roll"`
	Summary string `json:"summary"`
	// Image is the digest of the disk image it installs, "" for none yet.
	Image string `json:"image"`
}

func (a applianceRow) cells() []string {
	r := a.Roll
	if r == "" {
		r = "(site)"
	}
	img := "-"
	if a.Image != "" {
		img = a.Image[:min(len(a.Image), 19)] + "…"
	}
	return []string{a.Name, a.Node, r, img, a.Summary}
}

func applianceList(fs *flag.FlagSet) runFunc {
	return func(ctx context.Context, e *env) error {
		db, rg, err := e.openRolls(ctx)
		if err != nil {
			return err
		}
		g, err := rg.Graph(ctx)
		if err != nil {
			return err
		}
		images := &pxe.BlobImages{DB: db}
		var rows []applianceRow
		for _, a := range g.Appliances() {
			row := applianceRow{Name: a.Name, Node: a.Node, Roll: a.Roll, Summary: a.Summary}
			d, _, err := images.Image(ctx, a.Name)
			switch {
			case err == nil:
				row.Image = string(d)
			case !errors.Is(err, pxe.ErrNoImage):
				return err
			}
			rows = append(rows, row)
		}
		return printList(e, []string{"NAME", "NODE", "ROLL", "IMAGE", "SUMMARY"}, rows)
	}
}

func applianceAdd(fs *flag.FlagSet) runFunc {
	node := fs.String("node", "", "graph node the appliance's walk starts from (default: NAME)")
	summary := fs.String("summary", "", "one line saying what the appliance is")
	return func(ctx context.Context, e *env) error {
		_, rg, err := e.openRolls(ctx)
		if err != nil {
			return err
		}
		a := roll.Appliance{Name: e.args[0], Node: *node, Summary: *summary}
		if err := rg.AddAppliance(ctx, a); err != nil {
			return err
		}
		e.say("appliance %s added", a.Name)
		return nil
	}
}

// hostTarget is what the attribute chain needs of --host H (a host the
// frontend knows), or of the appliance alone when host is "".
func hostTarget(ctx context.Context, db *store.DB, appliance, host string) (roll.Target, error) {
	if host == "" {
		return roll.Target{Host: roll.Host{Appliance: appliance}}, nil
	}
	h, err := pxe.NewHosts(db).Get(ctx, host)
	if err != nil {
		return roll.Target{}, err
	}
	if appliance != "" && h.Appliance != appliance {
		return roll.Target{}, fmt.Errorf("host %s is a %s, not a %s", host, h.Appliance, appliance)
	}
	return roll.Target{Host: roll.Host{Name: h.Name, Appliance: h.Appliance, Rack: h.Rack, Rank: h.Rank, Cluster: h.Cluster}}, nil
}

// resolvedAttrs opens the graph and resolves the attributes of
// appliance, or of host.
func (e *env) resolvedAttrs(ctx context.Context, appliance, host string) (*roll.Graph, roll.Target, map[string]string, error) {
	db, rg, err := e.openRolls(ctx)
	if err != nil {
		return nil, roll.Target{}, nil, err
	}
	g, err := rg.Graph(ctx)
	if err != nil {
		return nil, roll.Target{}, nil, err
	}
	t, err := hostTarget(ctx, db, appliance, host)
	if err != nil {
		return nil, roll.Target{}, nil, err
	}
	if _, ok := g.Appliance(t.Appliance); !ok {
		return nil, roll.Target{}, nil, fmt.Errorf("appliance %s: %w (see ironbark appliance list)", t.Appliance, roll.ErrNoAppliance)
	}
	as, err := roll.NewAttrs(db).Resolve(ctx, g, t)
	if err != nil {
		return nil, roll.Target{}, nil, err
	}
	return g, t, roll.AttrMap(as), nil
}

func applianceGraph(fs *flag.FlagSet) runFunc {
	pruned := fs.Bool("pruned", false, "drop the edges whose conditions are false for the host (or the appliance's defaults)")
	host := fs.String("host", "", "host whose attributes decide the conditions")
	return func(ctx context.Context, e *env) error {
		g, t, attrs, err := e.resolvedAttrs(ctx, e.args[0], *host)
		if err != nil {
			return err
		}
		return g.DOT(e.stdout, t.Appliance, attrs, *pruned)
	}
}

func applianceProfile(fs *flag.FlagSet) runFunc {
	host := fs.String("host", "", "host whose attributes the profile is rendered with")
	asJSON := fs.Bool("json", false, "print the profile as JSON")
	return func(ctx context.Context, e *env) error {
		g, t, attrs, err := e.resolvedAttrs(ctx, e.args[0], *host)
		if err != nil {
			return err
		}
		p, err := g.Profile(t.Appliance, attrs)
		if err != nil {
			return err
		}
		if *asJSON {
			return printJSON(e.stdout, p)
		}
		return printProfile(e, p)
	}
}

func printProfile(e *env, p *roll.Profile) error {
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	origin := func(o roll.Origin) string { return o.Roll + "\t" + o.Pos }
	fmt.Fprintf(tw, "appliance %s (%s %s %s)\n", p.Appliance, p.Arch, p.OS, p.Release)
	fmt.Fprintf(tw, "\nNODE\tROLL\tFILE\n")
	for _, n := range p.Nodes {
		fmt.Fprintf(tw, "%s\t%s\n", n.Name, origin(n.Origin))
	}
	fmt.Fprintf(tw, "\nPACKAGE\tROLL\tFILE\n")
	for _, pk := range p.Packages {
		fmt.Fprintf(tw, "%s\t%s\n", pk.Name, origin(pk.Origin))
	}
	fmt.Fprintf(tw, "\nFILE\tMODE\tROLL\tFILE\n")
	for _, f := range p.Files {
		what := f.Path
		if f.Append {
			what += " (append)"
		}
		if f.Source != "" {
			what += " <- " + f.Source
		}
		mode := fmt.Sprintf("%04o", f.Mode.Perm())
		if f.Append && f.Mode == 0 {
			mode = "-" // the existing file's
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", what, mode, origin(f.Origin))
	}
	fmt.Fprintf(tw, "\nSCRIPT\tLINES\tROLL\tFILE\n")
	for _, s := range p.Scripts {
		in := s.Interpreter
		if in == "" {
			in = "/bin/sh"
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\n", in, strings.Count(strings.TrimSuffix(s.Body, "\n"), "\n")+1, origin(s.Origin))
	}
	return tw.Flush()
}

// attrScope reads --host/--rack/--appliance/--os: at most one.
type attrScope struct {
	host, appliance, os, rack string
}

func (s *attrScope) add(fs *flag.FlagSet) {
	fs.StringVar(&s.host, "host", "", "a host's attribute")
	fs.StringVar(&s.rack, "rack", "", "a rack's attribute")
	fs.StringVar(&s.appliance, "appliance", "", "an appliance's attribute")
	fs.StringVar(&s.os, "os", "", "an OS's attribute")
}

func (s *attrScope) get(e *env) (roll.Scope, string, error) {
	var scope roll.Scope = roll.ScopeGlobal
	target, n := "", 0
	for _, c := range []struct {
		v string
		s roll.Scope
	}{{s.host, roll.ScopeHost}, {s.rack, roll.ScopeRack}, {s.appliance, roll.ScopeAppliance}, {s.os, roll.ScopeOS}} {
		if c.v != "" {
			scope, target = c.s, c.v
			n++
		}
	}
	if n > 1 {
		return "", "", e.usagef("%s: give at most one of --host, --rack, --appliance, --os", e.cmd.name)
	}
	return scope, target, nil
}

// attrCommand is attr set and attr remove: read the scope flags, open
// the store, then do.
func attrCommand(do func(ctx context.Context, e *env, db *store.DB, scope roll.Scope, target string) error) func(fs *flag.FlagSet) runFunc {
	return func(fs *flag.FlagSet) runFunc {
		var s attrScope
		s.add(fs)
		return func(ctx context.Context, e *env) error {
			scope, target, err := s.get(e)
			if err != nil {
				return err
			}
			db, _, err := e.openRolls(ctx)
			if err != nil {
				return err
			}
			return do(ctx, e, db, scope, target)
		}
	}
}

func attrSet(fs *flag.FlagSet) runFunc { return attrCommand(setAttr)(fs) }

func attrRemove(fs *flag.FlagSet) runFunc { return attrCommand(removeAttr)(fs) }

func setAttr(ctx context.Context, e *env, db *store.DB, scope roll.Scope, target string) error {
	if scope == roll.ScopeHost {
		if _, err := pxe.NewHosts(db).Get(ctx, target); err != nil {
			return err
		}
	}
	if err := roll.NewAttrs(db).Set(ctx, scope, target, e.args[0], e.args[1]); err != nil {
		return err
	}
	where := string(scope)
	if target != "" {
		where += " " + target
	}
	e.say("%s: %s=%s", where, e.args[0], e.args[1])
	return nil
}

func removeAttr(ctx context.Context, e *env, db *store.DB, scope roll.Scope, target string) error {
	return roll.NewAttrs(db).Remove(ctx, scope, target, e.args[0])
}

type attrRow roll.Attr

func (a attrRow) cells() []string {
	return []string{a.Name, a.Value, a.Source, a.From}
}

func attrList(fs *flag.FlagSet) runFunc {
	var s attrScope
	s.add(fs)
	return func(ctx context.Context, e *env) error {
		scope, target, err := s.get(e)
		if err != nil {
			return err
		}
		db, rg, err := e.openRolls(ctx)
		if err != nil {
			return err
		}
		var as []roll.Attr
		switch scope {
		case roll.ScopeHost, roll.ScopeAppliance:
			// The whole chain, each value with its source.
			g, err := rg.Graph(ctx)
			if err != nil {
				return err
			}
			var t roll.Target
			if scope == roll.ScopeHost {
				t, err = hostTarget(ctx, db, "", target)
			} else {
				t, err = hostTarget(ctx, db, target, "")
			}
			if err != nil {
				return err
			}
			if as, err = roll.NewAttrs(db).Resolve(ctx, g, t); err != nil {
				return err
			}
		default:
			m, err := roll.NewAttrs(db).Get(ctx, scope, target)
			if err != nil {
				return err
			}
			if scope == roll.ScopeGlobal {
				// The rolls' global defaults under the site's.
				g, err := rg.Graph(ctx)
				if err != nil {
					return err
				}
				all, err := roll.NewAttrs(db).Resolve(ctx, g, roll.Target{})
				if err != nil {
					return err
				}
				for _, a := range all {
					if a.Source == "G" {
						as = append(as, a)
					}
				}
				break
			}
			for _, k := range slices.Sorted(maps.Keys(m)) {
				as = append(as, roll.Attr{Name: k, Value: m[k], Source: scope.Letter()})
			}
		}
		rows := make([]attrRow, len(as))
		for i, a := range as {
			rows[i] = attrRow(a)
		}
		return printList(e, []string{"ATTR", "VALUE", "SOURCE", "FROM"}, rows)
	}
}

// checkAppliance refuses an appliance no enabled roll or the site defines.
// A frontend with no rolls at all has no graph to check against: it says
// so and lets the name through.
func (e *env) checkAppliance(ctx context.Context, name string) error {
	_, rg, err := e.openRolls(ctx)
	if err != nil {
		return err
	}
	g, err := rg.Graph(ctx)
	if err != nil {
		return err
	}
	if _, ok := g.Appliance(name); ok {
		return nil
	}
	if len(g.Rolls()) == 0 {
		e.say("warning: no rolls are enabled, so appliance %s cannot be checked", name)
		return nil
	}
	var names []string
	for _, a := range g.Appliances() {
		names = append(names, a.Name)
	}
	return fmt.Errorf("appliance %s: %w; the appliances are: %s", name, roll.ErrNoAppliance, strings.Join(names, ", "))
}
