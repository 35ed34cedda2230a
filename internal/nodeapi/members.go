package nodeapi

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
)

// Member lists by version. A peer group's member list can hold thousands
// of addresses, and a launch changes it by a few: so the controller names
// each list by its version (MembersVersion, a hash of its content, the
// same on every controller), the node says with its poll which versions
// it holds (HeldMembers.Query, the "members" parameter of PathInstances),
// and the controller answers a list that changed with a MembersDelta
// against the version the node holds when it still has that version, and
// with the whole list otherwise. A node (or controller) that knows nothing
// of versions sends and gets whole lists, as before.

// QueryMembers is the PathInstances parameter that lists the member
// lists a node holds: GROUP:VERSION pairs, comma-separated.
const QueryMembers = "members"

// MembersDelta is a member list given as a change to one the node holds.
type MembersDelta struct {
	// Base is the version of the list the change applies to: the node
	// holds it (it said so in its poll).
	Base    string   `json:"base"`
	Added   []string `json:"added,omitempty"`
	Removed []string `json:"removed,omitempty"`
}

// MembersVersion names a member list by its content: the hex of a SHA-256
// over its addresses in string order, so it does not depend on the order
// the list came in.
func MembersVersion(members []string) string {
	s := members
	if !slices.IsSorted(s) {
		s = slices.Clone(members)
		slices.Sort(s)
	}
	h := sha256.New()
	for _, m := range s {
		h.Write([]byte(m))
		h.Write([]byte{'\n'})
	}
	return hex.EncodeToString(h.Sum(nil)[:12])
}

// DiffMembers is what turns base into next: the addresses next has and
// base has not, and the reverse.
func DiffMembers(base, next []string) (added, removed []string) {
	in := make(map[string]bool, len(base))
	for _, m := range base {
		in[m] = true
	}
	for _, m := range next {
		if in[m] {
			delete(in, m)
		} else {
			added = append(added, m)
		}
	}
	for _, m := range base {
		if in[m] {
			removed = append(removed, m)
			delete(in, m) // a duplicate in base is removed once
		}
	}
	return added, removed
}

// ErrMembersBase is returned by HeldMembers.Apply when an answer's delta
// is against a list the node does not hold (or does not give the list it
// says): the node asks again without its versions, for whole lists.
var ErrMembersBase = errors.New("member list delta does not apply to the list held")

// HeldMembers is a node's side: the member lists it holds, by group, and
// their versions. The zero value holds none. Not safe for concurrent use.
type HeldMembers struct {
	lists map[string]heldList
}

type heldList struct {
	version string
	members []string
}

// Query is the value of the QueryMembers parameter ("" when none is held),
// in group order so equal holdings give equal URLs.
func (h *HeldMembers) Query() string {
	if len(h.lists) == 0 {
		return ""
	}
	parts := make([]string, 0, len(h.lists))
	for g, l := range h.lists {
		parts = append(parts, g+":"+l.version)
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

// Reset forgets every list: the next poll asks for whole lists.
func (h *HeldMembers) Reset() { h.lists = nil }

// Apply turns the groups of an answer into whole member lists: each delta
// is applied to the list held at its base, and the result checked against
// the version the answer names. On success the lists held become those of
// the answer (groups it no longer names are forgotten) and every group
// with a version has its whole list in Members (MembersDelta stays, saying
// how it came); on ErrMembersBase nothing is held any more and the groups
// must not be used.
func (h *HeldMembers) Apply(groups []SecurityGroup) error {
	next := make(map[string]heldList, len(groups))
	for i := range groups {
		g := &groups[i]
		if g.MembersVersion == "" {
			if g.MembersDelta != nil {
				h.Reset()
				return fmt.Errorf("group %s: a delta without a version: %w", g.ID, ErrMembersBase)
			}
			continue // a controller without versions: Members is whole
		}
		if d := g.MembersDelta; d != nil {
			held, ok := h.lists[g.ID]
			if !ok || held.version != d.Base {
				h.Reset()
				return fmt.Errorf("group %s: delta from %s, held %q: %w", g.ID, d.Base, held.version, ErrMembersBase)
			}
			g.Members = applyDelta(held.members, d.Added, d.Removed)
			// The check that the node and the controller agree on the
			// list. A whole list is taken as named: a request holding
			// nothing then always succeeds, so a retry cannot loop.
			if v := MembersVersion(g.Members); v != g.MembersVersion {
				h.Reset()
				return fmt.Errorf("group %s: list is version %s after the delta, the answer says %s: %w", g.ID, v, g.MembersVersion, ErrMembersBase)
			}
		}
		next[g.ID] = heldList{version: g.MembersVersion, members: g.Members}
	}
	h.lists = next
	return nil
}

// applyDelta is base without removed, with added, in address order (as
// the controller sends whole lists); base is not modified.
func applyDelta(base, added, removed []string) []string {
	gone := make(map[string]bool, len(removed))
	for _, m := range removed {
		gone[m] = true
	}
	out := make([]string, 0, len(base)+len(added))
	for _, m := range base {
		if !gone[m] {
			out = append(out, m)
		}
	}
	out = append(out, added...)
	SortMembers(out)
	return slices.Compact(out)
}

// SortMembers sorts addresses in address order (10.0.0.9 before
// 10.0.0.10); strings that are not addresses come last, in string order.
func SortMembers(ms []string) {
	type key struct {
		a  netip.Addr
		ok bool
		s  string
	}
	ks := make([]key, len(ms))
	for i, m := range ms {
		a, err := netip.ParseAddr(m)
		ks[i] = key{a, err == nil, m}
	}
	slices.SortFunc(ks, func(x, y key) int {
		switch {
		case x.ok && y.ok:
			return x.a.Compare(y.a)
		case x.ok:
			return -1
		case y.ok:
			return 1
		}
		return strings.Compare(x.s, y.s)
	})
	for i := range ks {
		ms[i] = ks[i].s
	}
}

// ParseHeldMembers reads a QueryMembers value: group -> version. A
// malformed pair is an error (the controller then answers 400).
func ParseHeldMembers(q string) (map[string]string, error) {
	if q == "" {
		return nil, nil
	}
	out := map[string]string{}
	for _, p := range strings.Split(q, ",") {
		g, v, ok := strings.Cut(p, ":")
		if !ok || g == "" || v == "" {
			return nil, fmt.Errorf("%s: %q is not GROUP:VERSION", QueryMembers, p)
		}
		out[g] = v
	}
	return out, nil
}
