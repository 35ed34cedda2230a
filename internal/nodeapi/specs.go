package nodeapi

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
)

// Instance specs by version. Every change on a node (a launch, a peer
// group's new member) answers the node's long poll with its whole desired
// state, and a node holds many instances whose specs did not change: so
// the controller names each spec by its version (InstanceSpec.Version, a
// hash of its content, the same on every controller), the node says with
// its poll which versions it holds (HeldSpecs.Query, the "specs" parameter
// of PathInstances), and the controller lists the specs the node holds
// unchanged by ID only (Desired.Kept) and sends the others whole. A node
// that sends no versions gets every spec whole, as before.

// QuerySpecs is the PathInstances parameter that lists the instance specs
// a node holds: INSTANCE:VERSION pairs, comma-separated.
const QuerySpecs = "specs"

// SpecVersion names a spec by its content (its Version aside): the hex of
// a SHA-256 over its JSON.
func SpecVersion(s InstanceSpec) string {
	s.Version = ""
	b, err := json.Marshal(s)
	if err != nil {
		// A spec is plain data; Marshal does not fail on it.
		panic(fmt.Sprintf("instance spec %s: %v", s.InstanceID, err))
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// ErrSpecsBase is returned by HeldSpecs.Apply when an answer keeps a spec
// the node does not hold: the node asks again without its versions, for
// whole specs.
var ErrSpecsBase = errors.New("instance spec kept is not one the node holds")

// HeldSpecs is a node's side: the instance specs it holds, with their
// versions. The zero value holds none. Not safe for concurrent use.
type HeldSpecs struct {
	specs map[string]InstanceSpec
}

// Query is the value of the QuerySpecs parameter ("" when none is held),
// in instance order so equal holdings give equal URLs.
func (h *HeldSpecs) Query() string {
	parts := make([]string, 0, len(h.specs))
	for id, s := range h.specs {
		parts = append(parts, id+":"+s.Version)
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

// Reset forgets every spec: the next poll asks for whole specs.
func (h *HeldSpecs) Reset() { h.specs = nil }

// Apply turns d's instances into the whole desired set: each kept ID
// becomes the spec held for it, and the instances are put in ID order. On
// success the specs held become d's (those without a version are not
// held); on ErrSpecsBase nothing is held any more and d must not be used.
func (h *HeldSpecs) Apply(d *Desired) error {
	next := make(map[string]InstanceSpec, len(d.Instances)+len(d.Kept))
	all := make([]InstanceSpec, 0, len(d.Instances)+len(d.Kept))
	for _, id := range d.Kept {
		s, ok := h.specs[id]
		if !ok {
			h.Reset()
			return fmt.Errorf("instance %s: %w", id, ErrSpecsBase)
		}
		next[id] = s
		all = append(all, s)
	}
	for _, s := range d.Instances {
		if s.Version != "" {
			next[s.InstanceID] = s
		}
		all = append(all, s)
	}
	slices.SortFunc(all, func(a, b InstanceSpec) int { return strings.Compare(a.InstanceID, b.InstanceID) })
	d.Instances = all
	h.specs = next
	return nil
}

// ParseHeldSpecs reads a QuerySpecs value: instance -> version. A
// malformed pair is an error (the controller then answers 400).
func ParseHeldSpecs(q string) (map[string]string, error) {
	if q == "" {
		return nil, nil
	}
	out := map[string]string{}
	for _, p := range strings.Split(q, ",") {
		id, v, ok := strings.Cut(p, ":")
		if !ok || id == "" || v == "" {
			return nil, fmt.Errorf("%s: %q is not INSTANCE:VERSION", QuerySpecs, p)
		}
		out[id] = v
	}
	return out, nil
}

// Held is what a node holds of the desired state, so that the controller
// sends only what changed: member lists and instance specs by version.
type Held struct {
	Members HeldMembers
	Specs   HeldSpecs
}
