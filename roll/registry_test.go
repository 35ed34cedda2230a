package roll

import (
	"context"
	"crypto/ed25519"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"ironbark/internal/store"
	"ironbark/internal/store/storetest"
)

func attrLine(as []Attr) string {
	var b strings.Builder
	for _, a := range as {
		b.WriteString(a.Source + " " + a.Name + "=" + a.Value)
		if a.From != "" {
			b.WriteString(" (" + a.From + ")")
		}
		b.WriteString("\n")
	}
	return b.String()
}

// The chain global < os < appliance < rack < host, with the rolls'
// defaults under each scope's stored values and intrinsics on top.
func TestAttributeChain(t *testing.T) {
	storetest.Each(t, Migrations(), func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		g := mustMerge(t, "base")
		at := NewAttrs(db)
		set := func(s Scope, target, k, v string) {
			t.Helper()
			if err := at.Set(ctx, s, target, k, v); err != nil {
				t.Fatal(err)
			}
		}
		set(ScopeGlobal, "", "ntp_server", "pool.ntp.org")
		set(ScopeGlobal, "", "level", "global")
		set(ScopeOS, "debian", "level", "os")
		set(ScopeAppliance, "compute", "level", "appliance")
		set(ScopeAppliance, "frontend", "level", "not this one")
		set(ScopeRack, "0", "level", "rack")
		set(ScopeRack, "1", "level", "not this rack")
		set(ScopeHost, "compute-0-0", "level", "host")
		set(ScopeHost, "compute-0-1", "only", "compute-0-1")
		set(ScopeGlobal, "", "ssh_port", "2222") // over the base roll's default
		set(ScopeGlobal, "", "arch", "x86_64")   // the intrinsic default, set
		set(ScopeHost, "compute-0-0", "level", "host, again")

		host := Target{Host: Host{Name: "compute-0-0", Appliance: "compute", Rack: 0, Rank: 0, Cluster: "c1"}}
		as, err := at.Resolve(ctx, g, host)
		if err != nil {
			t.Fatal(err)
		}
		golden(t, "attrs-compute-0-0.txt", []byte(attrLine(as)))

		// Each scope removed in turn uncovers the next lower one.
		for _, c := range []struct {
			scope  Scope
			target string
			want   string
		}{
			{ScopeHost, "compute-0-0", "rack"},
			{ScopeRack, "0", "appliance"},
			{ScopeAppliance, "compute", "os"},
			{ScopeOS, "debian", "global"},
		} {
			if err := at.Remove(ctx, c.scope, c.target, "level"); err != nil {
				t.Fatal(err)
			}
			as, err := at.Resolve(ctx, g, host)
			if err != nil {
				t.Fatal(err)
			}
			if got := AttrMap(as)["level"]; got != c.want {
				t.Errorf("after removing %s: level = %q, want %q", c.scope, got, c.want)
			}
		}
		if err := at.Remove(ctx, ScopeHost, "compute-0-0", "level"); !errors.Is(err, ErrNoAttr) {
			t.Errorf("remove twice: %v", err)
		}
		// The appliance alone: no host, rack or rank.
		as, err = at.Resolve(ctx, g, Target{Host: Host{Appliance: "compute"}})
		if err != nil {
			t.Fatal(err)
		}
		m := AttrMap(as)
		if _, ok := m["hostname"]; ok || m["xen"] != "yes" || m["appliance"] != "compute" {
			t.Errorf("appliance alone: %v", m)
		}
		// The resolved attributes drive the walk: xen=off at the host
		// makes compute-0-0 a KVM node.
		set(ScopeHost, "compute-0-0", "xen", "off")
		as, _ = at.Resolve(ctx, g, host)
		p, err := g.Profile("compute", AttrMap(as))
		if err != nil {
			t.Fatal(err)
		}
		var nodes []string
		for _, n := range p.Nodes {
			nodes = append(nodes, n.Name)
		}
		if s := strings.Join(nodes, " "); !strings.Contains(s, "kvm") || strings.Contains(s, "xen") {
			t.Errorf("compute-0-0 with xen=off walks %s", s)
		}
	})
}

func TestAttrSetRefuses(t *testing.T) {
	db := storetest.SQLite(t, Migrations())
	ctx := context.Background()
	at := NewAttrs(db)
	for _, c := range []struct {
		scope        Scope
		target, k, v string
	}{
		{ScopeHost, "compute-0-0", "hostname", "x"}, // intrinsic
		{ScopeHost, "compute-0-0", "rack", "2"},
		{ScopeGlobal, "", "bad name", "x"},
		{ScopeGlobal, "", "and", "x"}, // a condition keyword
		{ScopeGlobal, "x", "a", "x"},  // global with a target
		{ScopeRack, "r1", "a", "x"},
		{ScopeHost, "", "a", "x"},
		{"planet", "earth", "a", "x"},
		{ScopeGlobal, "", "a", "\xff"},
	} {
		if err := at.Set(ctx, c.scope, c.target, c.k, c.v); err == nil {
			t.Errorf("Set(%s, %q, %q, %q) accepted", c.scope, c.target, c.k, c.v)
		}
	}
}

// TestSSHKeysAttr: ssh_authorized_keys takes authorized_keys lines at any
// scope; a malformed line is refused with its number, and the value set
// before stays.
func TestSSHKeysAttr(t *testing.T) {
	db := storetest.SQLite(t, Migrations())
	ctx := context.Background()
	at := NewAttrs(db)
	const good = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f admin@lab"
	if err := at.Set(ctx, ScopeGlobal, "", SSHKeysAttr, good); err != nil {
		t.Fatal(err)
	}
	if err := at.Set(ctx, ScopeHost, "compute-0-0", SSHKeysAttr, "# none here\n"); err != nil {
		t.Fatal(err)
	}
	err := at.Set(ctx, ScopeGlobal, "", SSHKeysAttr, good+"\nssh-ed25519 AAAA-not-base64 x\n")
	if err == nil || !strings.Contains(err.Error(), "ssh_authorized_keys: line 2:") {
		t.Fatalf("a bad second line: %v", err)
	}
	if m, _ := at.Get(ctx, ScopeGlobal, ""); m[SSHKeysAttr] != good {
		t.Errorf("after the refused set the value is %q, want the one before", m[SSHKeysAttr])
	}
}

// signedArchive archives a testdata roll (or dir), signed with key.
func signedArchive(t *testing.T, src string, key ed25519.PrivateKey) string {
	t.Helper()
	if !filepath.IsAbs(src) {
		src = filepath.Join("testdata", "rolls", src)
	}
	out := filepath.Join(t.TempDir(), filepath.Base(src)+".tar")
	if _, err := Create(src, out, key); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestRegistry(t *testing.T) {
	storetest.Each(t, Migrations(), func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		key, _, priv := newKey(t)
		_, _, otherPriv := newKey(t)
		otherKey, _ := ReadPrivateKey(otherPriv)
		base := loadRolls(t, "base")
		rg := &Registry{DB: db, Dir: filepath.Join(t.TempDir(), "rolls"), Builtin: base, Arch: "x86_64", OS: "debian"}
		if _, err := Trust(rg.KeysDir(), priv+".pub"); err != nil {
			t.Fatal(err)
		}
		list := func() string {
			t.Helper()
			is, err := rg.List(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var s []string
			for _, i := range is {
				x := i.Name
				if i.Enabled {
					x += "+"
				}
				if i.Builtin {
					x += "(builtin)"
				}
				s = append(s, x)
			}
			return strings.Join(s, " ")
		}
		if got := list(); got != "base+(builtin)" {
			t.Fatalf("list = %q", got)
		}
		files := func() int {
			ents, _ := os.ReadDir(rg.Dir)
			n := 0
			for _, e := range ents {
				if !e.IsDir() {
					n++
				}
			}
			return n
		}

		// Refused: unsigned, unknown key, tampered, wrong arch, and a roll
		// that does not merge; nothing recorded, no file kept.
		monitor := signedArchive(t, "monitor", key)
		tampered := filepath.Join(t.TempDir(), "tampered.tar")
		rewriteTar(t, monitor, tampered, func(name string, b []byte) []byte {
			if name == "nodes/prometheus-node.xml" {
				return append(b, ' ')
			}
			return b
		})
		arm := signedArchive(t, writeRoll(t, map[string]string{
			"roll.xml": `<roll name="arm" version="1" arch="aarch64" os="debian"/>`}), key)
		conflict := signedArchive(t, writeRoll(t, map[string]string{
			"roll.xml":      `<roll name="other" version="1" arch="x86_64" os="debian"/>`,
			"nodes/ssh.xml": "<kickstart><package>dropbear</package></kickstart>\n"}), key)
		cyclic := signedArchive(t, writeRoll(t, map[string]string{
			"roll.xml":             `<roll name="cyclic" version="1" arch="x86_64" os="debian"/>`,
			"graphs/default/c.xml": "<graph>\n<edge from=\"ssh\" to=\"client\"/>\n</graph>\n"}), key)
		for _, c := range []struct {
			file string
			opt  AddOptions
			is   error
			want string
		}{
			{signedArchive(t, "monitor", nil), AddOptions{}, ErrUnsigned, SigFile},
			{signedArchive(t, "monitor", otherKey), AddOptions{}, ErrUnknownKey, KeyID(otherKey.Public().(ed25519.PublicKey))},
			{tampered, AddOptions{}, ErrTampered, "nodes/prometheus-node.xml"},
			{tampered, AddOptions{InsecureTrust: true}, ErrTampered, "nodes/prometheus-node.xml"},
			{arm, AddOptions{}, ErrWrongTarget, "aarch64"},
			{conflict, AddOptions{}, ErrConflict, "nodes/ssh.xml"},
			{cyclic, AddOptions{}, ErrCycle, "graphs/default/c.xml:2"},
		} {
			_, err := rg.Add(ctx, c.file, c.opt)
			if !errors.Is(err, c.is) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("add %s: %v, want %v naming %s", filepath.Base(c.file), err, c.is, c.want)
			}
		}
		if got := list(); got != "base+(builtin)" || files() != 0 {
			t.Fatalf("after refusals: list %q, %d files kept", got, files())
		}

		// Added (signed), enabled: compute gains the node, frontend not.
		info, err := rg.Add(ctx, monitor, AddOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if info.KeyID != KeyID(key.Public().(ed25519.PublicKey)) || info.Enabled {
			t.Errorf("added %+v", info)
		}
		if got := list(); got != "base+(builtin) monitor" || files() != 1 {
			t.Errorf("list %q, %d files", got, files())
		}
		if err := rg.SetEnabled(ctx, "monitor", true); err != nil {
			t.Fatal(err)
		}
		g, err := rg.Graph(ctx)
		if err != nil {
			t.Fatal(err)
		}
		p, _ := g.Profile("compute", nil)
		golden(t, "profile-compute-monitor.txt", profileText(p))

		if err := rg.Remove(ctx, "base"); !errors.Is(err, ErrBuiltin) {
			t.Errorf("remove builtin: %v", err)
		}
		// Site appliances: only on a node that exists.
		if err := rg.AddAppliance(ctx, Appliance{Name: "monitored", Node: "nope"}); err == nil {
			t.Error("appliance on a missing node accepted")
		}
		if err := rg.AddAppliance(ctx, Appliance{Name: "login", Node: "client"}); err != nil {
			t.Fatal(err)
		}
		if err := rg.AddAppliance(ctx, Appliance{Name: "compute", Node: "client"}); !errors.Is(err, ErrConflict) {
			t.Errorf("appliance shadowing a roll's: %v", err)
		}
		// base cannot be disabled while the site's login appliance needs
		// its client node.
		if err := rg.SetEnabled(ctx, "base", false); err == nil || !strings.Contains(err.Error(), "client") {
			t.Errorf("disable base under login: %v", err)
		}
		g, _ = rg.Graph(ctx)
		if _, ok := g.Appliance("login"); !ok {
			t.Error("site appliance missing from the graph")
		}
		// An unsigned roll with --insecure-trust.
		info, err = rg.Add(ctx, signedArchive(t, "site", nil), AddOptions{InsecureTrust: true, Enable: true})
		if err != nil || info.KeyID != "insecure" || !info.Enabled {
			t.Fatalf("insecure add: %+v %v", info, err)
		}
		// The profile an image is built from: appliance attributes, no host.
		if err := NewAttrs(db).Set(ctx, ScopeAppliance, "compute", "xen", "no"); err != nil {
			t.Fatal(err)
		}
		p, err = rg.ApplianceProfile(ctx, "compute")
		if err != nil {
			t.Fatal(err)
		}
		if p.Attrs["xen"] != "no" || p.Attrs["ssh_port"] != "22" || p.Nodes[len(p.Nodes)-2].Name != "kvm" {
			t.Errorf("appliance profile: %v %v", p.Attrs, p.Nodes)
		}
		if _, err := rg.ApplianceProfile(ctx, "nope"); !errors.Is(err, ErrNoAppliance) {
			t.Errorf("profile of no appliance: %v", err)
		}
		// Removed: the file goes, the graph loses it.
		if err := rg.SetEnabled(ctx, "monitor", false); err != nil {
			t.Fatal(err)
		}
		if err := rg.Remove(ctx, "monitor"); err != nil {
			t.Fatal(err)
		}
		if got := list(); got != "base+(builtin) site+" || files() != 1 {
			t.Errorf("after remove: %q, %d files", got, files())
		}
		if err := rg.Remove(ctx, "monitor"); !errors.Is(err, ErrNoRoll) {
			t.Errorf("remove twice: %v", err)
		}
	})
}
