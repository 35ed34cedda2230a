package roll

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// Roll is one roll as read from a directory or an archive: its manifest,
// its node files (with extend- and replace- overrides), its graph and the
// files it ships. Everything remembers the roll and file:line it came from.
type Roll struct {
	Manifest
	// Source says where the roll was read from (a directory, an archive
	// or an embedded tree), for messages.
	Source string `json:"source"`
	// Nodes are nodes/<name>.xml by name.
	Nodes map[string]*Node `json:"-"`
	// Extends are nodes/extend-<name>.xml by the name they extend.
	Extends map[string]*Node `json:"-"`
	// Replaces are nodes/replace-<name>.xml by the name they replace.
	Replaces map[string]*Node `json:"-"`
	Edges    []Edge           `json:"-"`
	Orders   []Order          `json:"-"`
	// Files are the roll's shipped files (files/...) by path inside the
	// roll; <file src=...> refers to them.
	Files map[string][]byte `json:"-"`
	// ManifestFile is roll.xml or roll-<name>.xml, for messages.
	ManifestFile string `json:"-"`
}

// Manifest is roll.xml (or roll-<name>.xml): what the roll is, the
// appliances it defines and its default attributes.
type Manifest struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	Release string `json:"release"`
	Arch    string `json:"arch"` // x86_64, aarch64, or "any"
	OS      string `json:"os"`   // debian
	Summary string `json:"summary"`
	// Appliances are the appliances this roll defines: each names the
	// graph node its walk starts from.
	Appliances []Appliance `json:"appliances,omitempty"`
	// Attrs are global attribute defaults, below anything set in the store.
	Attrs map[string]string `json:"attrs,omitempty"`
}

// Appliance is a kind of machine: a root node in the graph and default
// attributes for the machines of that kind.
type Appliance struct {
	Name    string            `json:"name"`
	Node    string            `json:"node"` // graph root; defaults to Name
	Summary string            `json:"summary"`
	Attrs   map[string]string `json:"attrs,omitempty"`
	Roll    string            `json:"roll"` // "" for one added by the site
	Pos     string            `json:"pos,omitempty"`
}

// Guard is the set of arch=, os=, release= and cond= attributes an element
// can carry: comma lists are ORed, the attributes ANDed.
type Guard struct {
	Arch, OS, Release []string
	Cond              *Cond
}

// Match reports whether the guard holds for a host with attrs.
func (g Guard) Match(attrs map[string]string) bool {
	if len(g.Arch) > 0 && !slices.ContainsFunc(g.Arch, func(a string) bool { return sameArch(a, attrs["arch"]) }) {
		return false
	}
	if len(g.OS) > 0 && !slices.Contains(g.OS, attrs["os"]) {
		return false
	}
	if len(g.Release) > 0 && !slices.Contains(g.Release, attrs["release"]) {
		return false
	}
	return g.Cond.Eval(attrs)
}

// String renders the guard the way it was written, for DOT labels.
func (g Guard) String() string {
	var parts []string
	if len(g.Arch) > 0 {
		parts = append(parts, "arch="+strings.Join(g.Arch, ","))
	}
	if len(g.OS) > 0 {
		parts = append(parts, "os="+strings.Join(g.OS, ","))
	}
	if len(g.Release) > 0 {
		parts = append(parts, "release="+strings.Join(g.Release, ","))
	}
	if c := g.Cond.String(); c != "" {
		parts = append(parts, "cond="+c)
	}
	return strings.Join(parts, " ")
}

func (g Guard) and(o Guard) Guard {
	r := Guard{Arch: g.Arch, OS: g.OS, Release: g.Release, Cond: g.Cond}
	if len(o.Arch) > 0 {
		r.Arch = intersectOr(g.Arch, o.Arch)
	}
	if len(o.OS) > 0 {
		r.OS = intersectOr(g.OS, o.OS)
	}
	if len(o.Release) > 0 {
		r.Release = intersectOr(g.Release, o.Release)
	}
	switch {
	case o.Cond.String() == "":
	case g.Cond.String() == "":
		r.Cond = o.Cond
	default:
		r.Cond = &Cond{src: "(" + g.Cond.src + ") and (" + o.Cond.src + ")", root: andExpr{g.Cond.root, o.Cond.root}}
	}
	return r
}

// intersectOr ANDs two OR-lists; an empty result still must not match
// anything, so it holds an impossible value.
func intersectOr(a, b []string) []string {
	if len(a) == 0 {
		return b
	}
	var r []string
	for _, x := range a {
		if slices.Contains(b, x) {
			r = append(r, x)
		}
	}
	if len(r) == 0 {
		return []string{"\x00none"}
	}
	return r
}

// sameArch compares architecture names, taking Debian's and the kernel's
// names for one architecture as equal.
func sameArch(a, b string) bool {
	return normArch(a) == normArch(b)
}

func normArch(a string) string {
	switch a {
	case "amd64":
		return "x86_64"
	case "arm64":
		return "aarch64"
	}
	return a
}

// ArchMatches reports whether a roll built for rollArch can serve a
// frontend of arch.
func ArchMatches(rollArch, arch string) bool {
	switch rollArch {
	case "any", "noarch", "all":
		return true
	}
	return sameArch(rollArch, arch)
}

// Node is one node file: a piece of configuration, a vertex of the graph.
type Node struct {
	Name        string
	Roll        string
	File        string // nodes/<file>.xml inside the roll
	Description string
	Items       []Item
	raw         []byte // the file, to tell identical definitions from conflicting ones
}

// ItemKind says what an Item is.
type ItemKind int

// Kinds of Item.
const (
	ItemPackage ItemKind = iota
	ItemFile
	ItemPost
)

// Item is one <package>, <file> or <post> of a node file.
type Item struct {
	Kind  ItemKind
	Guard Guard
	Pos   string // file:line inside the roll

	Packages []string // ItemPackage

	// ItemFile
	Name   *Template
	Perms  uint32
	Owner  string
	Append bool
	Src    string // path of a shipped file in the roll, or ""

	// ItemFile content, ItemPost body.
	Text *Template
	// ItemPost
	Interpreter string
}

// Edge is one graph edge: From needs To.
type Edge struct {
	From, To string
	Guard    Guard
	Roll     string
	Pos      string // file:line inside the roll
}

// Order is one order edge: Head is installed before Tail. HEAD and TAIL
// are the pseudo-nodes for first and last.
type Order struct {
	Head, Tail string
	Guard      Guard
	Roll       string
	Pos        string
}

// The order graph's pseudo-nodes.
const (
	Head = "HEAD"
	Tail = "TAIL"
)

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._+-]{0,62}$`)

// ValidName reports whether s can name a roll, node or appliance.
func ValidName(s string) error {
	if !nameRE.MatchString(s) {
		return fmt.Errorf("name %q: want lower-case letters, digits and . _ + -, starting with a letter or digit", s)
	}
	return nil
}

// debPackageRE is Debian policy's package name, optionally with an
// architecture qualifier (libc6:i386).
var debPackageRE = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]+(:[a-z0-9-]+)?$`)

// ErrWrongTarget is returned (wrapped) for a roll built for another
// architecture or OS than the frontend's.
var ErrWrongTarget = errors.New("roll is for another target")

// CheckTarget refuses a roll whose manifest names another architecture or
// OS than arch and os (a roll for "any" arch fits all).
func (r *Roll) CheckTarget(arch, os string) error {
	if !ArchMatches(r.Arch, arch) {
		return fmt.Errorf("roll %s: %s: %w: arch %s, this frontend is %s", r.Name, r.manifestFile(), ErrWrongTarget, r.Arch, arch)
	}
	if r.OS != os && r.OS != "any" {
		return fmt.Errorf("roll %s: %s: %w: os %s, this frontend is %s", r.Name, r.manifestFile(), ErrWrongTarget, r.OS, os)
	}
	return nil
}

func (r *Roll) manifestFile() string {
	if r.ManifestFile != "" {
		return r.ManifestFile
	}
	return "roll.xml"
}
