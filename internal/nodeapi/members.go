package nodeapi

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
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
	return sortedVersion(s)
}

// sortedVersion is MembersVersion of a list already in string order.
func sortedVersion(s []string) string {
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
	// Steps, when set, shares the lists deltas give with the other
	// HeldMembers of the process that use the same Steps.
	Steps *MemberSteps
}

// MemberSteps shares, among the HeldMembers of one process, the lists
// their deltas gave. A process that simulates thousands of nodes
// (bench/scale) applied each launch's one-address delta to the same list
// once per node: a copy of the whole list in two orders and a hash of it,
// each time. That was a third of the load generator's CPU, on the cores
// of the controller it measures. A delta already applied to the same base
// version, with the same change and the same version named, gives the
// same list: it is taken from here, where it was put once checked. A real
// agent holds one copy of each list and has no use for it. The zero value
// is ready; safe for concurrent use.
type MemberSteps struct {
	mu       sync.Mutex
	cur, old map[string]heldList // two generations: recent steps are kept
}

// memberStepsKept is how many steps a generation keeps: enough for the
// steps of every group changing at once, few enough that the lists it
// keeps alive after their nodes moved on stay small.
const memberStepsKept = 1024

// stepKey names a delta applied: its base, its change and the version it
// must give, each length-prefixed so no two steps share a key.
func stepKey(d *MembersDelta, version string) string {
	b := make([]byte, 0, 64)
	put := func(s string) {
		b = strconv.AppendInt(b, int64(len(s)), 10)
		b = append(b, ':')
		b = append(b, s...)
	}
	put(d.Base)
	put(version)
	b = strconv.AppendInt(b, int64(len(d.Added)), 10)
	for _, m := range d.Added {
		put(m)
	}
	b = append(b, ';')
	for _, m := range d.Removed {
		put(m)
	}
	return string(b)
}

func (s *MemberSteps) get(key string) (heldList, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if l, ok := s.cur[key]; ok {
		return l, true
	}
	l, ok := s.old[key]
	if ok {
		s.putLocked(key, l)
	}
	return l, ok
}

func (s *MemberSteps) put(key string, l heldList) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.putLocked(key, l)
}

func (s *MemberSteps) putLocked(key string, l heldList) {
	if len(s.cur) >= memberStepsKept || s.cur == nil {
		s.old, s.cur = s.cur, make(map[string]heldList, memberStepsKept)
	}
	s.cur[key] = l
}

type heldList struct {
	version string
	members []string // as the controller sent it: in address order
	// byString is members in string order without duplicates (what the
	// version hashes), and members is in address order without
	// duplicates, once ordered is set: made at the first delta to the
	// list, so later deltas merge into both instead of sorting them.
	byString []string
	ordered  bool
}

// order readies l for merging deltas (heldList.byString).
func (l *heldList) order() {
	if l.ordered {
		return
	}
	if !slices.IsSortedFunc(l.members, compareMembers) || hasAdjacentDuplicates(l.members) {
		m := slices.Clone(l.members)
		SortMembers(m)
		l.members = slices.Compact(m)
	}
	l.byString = slices.Compact(slices.Sorted(slices.Values(l.members)))
	l.ordered = true
}

func hasAdjacentDuplicates(ms []string) bool {
	for i := 1; i < len(ms); i++ {
		if ms[i] == ms[i-1] {
			return true
		}
	}
	return false
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
			if len(d.Added) == 0 && len(d.Removed) == 0 && d.Base == g.MembersVersion {
				// Unchanged (most groups of most answers): the list held,
				// whose version was checked when it was taken.
				g.Members = held.members
				next[g.ID] = held
				continue
			}
			var key string
			if h.Steps != nil {
				// Lists are never changed once made (merged makes new
				// ones), so nodes can share them. Only a checked list is
				// put: a node whose base was not what its version names
				// (a whole list is taken as named) gets the right list
				// here, where applying the delta would have found it.
				key = stepKey(d, g.MembersVersion)
				if after, ok := h.Steps.get(key); ok {
					g.Members = after.members
					next[g.ID] = after
					continue
				}
			}
			held.order()
			after := heldList{version: g.MembersVersion, ordered: true,
				members:  merged(held.members, d.Added, d.Removed, compareMembers),
				byString: merged(held.byString, d.Added, d.Removed, strings.Compare)}
			// The check that the node and the controller agree on the
			// list. A whole list is taken as named: a request holding
			// nothing then always succeeds, so a retry cannot loop.
			if v := sortedVersion(after.byString); v != g.MembersVersion {
				h.Reset()
				return fmt.Errorf("group %s: list is version %s after the delta, the answer says %s: %w", g.ID, v, g.MembersVersion, ErrMembersBase)
			}
			if h.Steps != nil {
				h.Steps.put(key, after)
			}
			g.Members = after.members
			next[g.ID] = after
			continue
		}
		next[g.ID] = heldList{version: g.MembersVersion, members: g.Members}
	}
	h.lists = next
	return nil
}

// merged is list without removed, with added, in the order cmp gives;
// list must be in that order without duplicates, and is not modified. A
// delta changes a few addresses of a list of thousands: each is found by
// binary search, and the rest is copied, not sorted again.
func merged(list, added, removed []string, cmp func(a, b string) int) []string {
	var drop []int // indexes of list, in order
	for _, m := range removed {
		if i, ok := slices.BinarySearchFunc(list, m, cmp); ok && list[i] == m {
			drop = append(drop, i)
		}
	}
	slices.Sort(drop)
	drop = slices.Compact(drop)
	type insert struct {
		at int
		m  string
	}
	var ins []insert // in order
	add := slices.Clone(added)
	slices.SortFunc(add, cmp)
	for k, m := range add {
		if k > 0 && m == add[k-1] {
			continue
		}
		i, found := slices.BinarySearchFunc(list, m, cmp)
		if found && list[i] == m {
			// Present: kept, also when the delta removes it too.
			if j, ok := slices.BinarySearch(drop, i); ok {
				drop = slices.Delete(drop, j, j+1)
			}
			continue
		}
		ins = append(ins, insert{i, m})
	}
	out := make([]string, 0, len(list)-len(drop)+len(ins))
	d, k := 0, 0
	for i := 0; i <= len(list); i++ {
		for k < len(ins) && ins[k].at == i {
			out = append(out, ins[k].m)
			k++
		}
		if i == len(list) {
			break
		}
		if d < len(drop) && drop[d] == i {
			d++
			continue
		}
		out = append(out, list[i])
	}
	return out
}

// compareMembers is SortMembers' order: addresses in address order, then
// strings that are not addresses, in string order.
func compareMembers(x, y string) int {
	a, errA := netip.ParseAddr(x)
	b, errB := netip.ParseAddr(y)
	switch {
	case errA == nil && errB == nil:
		return a.Compare(b)
	case errA == nil:
		return -1
	case errB == nil:
		return 1
	}
	return strings.Compare(x, y)
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
