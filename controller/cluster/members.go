package cluster

import (
	"slices"
	"sync"
	"time"

	"ironbark/internal/nodeapi"
)

// memberHistory is what lets a controller answer a peer group's member
// list as a change to the list a node holds (nodeapi.MembersDelta) rather
// than whole: the lists it recently answered with, per group, by version.
// Versions are content hashes, so a list another controller sent the node
// is found here too when this controller has read the same content; when
// the node's version is not here the node gets the whole list. Memory is
// bounded: a group keeps its newest list and at most maxSnapshots-1 older
// ones, each for snapshotKeep after a newer one replaced it, and at most
// maxHistoryGroups groups are kept (the least recently used go first).
type memberHistory struct {
	mu     sync.Mutex
	groups map[string]*groupHistory
	now    func() time.Time
	// maxGroups, keep and maxSnaps are the bounds (tests lower them).
	maxGroups int
	keep      time.Duration
	maxSnaps  int
}

const (
	maxSnapshots     = 8
	snapshotKeep     = time.Minute
	maxHistoryGroups = 50000
	maxDeltasCached  = 16
)

type groupHistory struct {
	snaps  []memberSnapshot // oldest first; the last is the newest
	deltas map[deltaKey]*nodeapi.MembersDelta
	used   time.Time
}

type memberSnapshot struct {
	version string
	members []string // shared with the ledger's reads: never modified
	// replaced is when a newer list replaced this one (zero: newest).
	replaced time.Time
}

type deltaKey struct{ base, next string }

func newMemberHistory(now func() time.Time) *memberHistory {
	if now == nil {
		now = time.Now
	}
	return &memberHistory{groups: map[string]*groupHistory{}, now: now,
		maxGroups: maxHistoryGroups, keep: snapshotKeep, maxSnaps: maxSnapshots}
}

// record notes that the group's list is members, of version, now.
func (h *memberHistory) record(group, version string, members []string) {
	now := h.now()
	h.mu.Lock()
	defer h.mu.Unlock()
	g := h.groups[group]
	if g == nil {
		if len(h.groups) >= h.maxGroups {
			h.evictLocked()
		}
		g = &groupHistory{}
		h.groups[group] = g
	}
	g.used = now
	if n := len(g.snaps); n > 0 && g.snaps[n-1].version == version {
		return
	}
	// A list may return to an earlier version (a launch, then its
	// termination): it becomes the newest again.
	g.snaps = slices.DeleteFunc(g.snaps, func(s memberSnapshot) bool { return s.version == version })
	if n := len(g.snaps); n > 0 {
		g.snaps[n-1].replaced = now
	}
	g.snaps = append(g.snaps, memberSnapshot{version: version, members: members})
	h.pruneLocked(g, now)
}

// pruneLocked drops the group's lists replaced more than keep ago and the
// oldest past maxSnaps, and the cached deltas that name a dropped list.
func (h *memberHistory) pruneLocked(g *groupHistory, now time.Time) {
	drop := 0
	for drop < len(g.snaps)-1 && (len(g.snaps)-drop > h.maxSnaps || now.Sub(g.snaps[drop].replaced) > h.keep) {
		drop++
	}
	if drop == 0 {
		return
	}
	g.snaps = slices.Delete(g.snaps, 0, drop)
	for k := range g.deltas {
		if !g.has(k.base) || !g.has(k.next) {
			delete(g.deltas, k)
		}
	}
}

func (g *groupHistory) has(version string) bool {
	return g.find(version) >= 0
}

func (g *groupHistory) find(version string) int {
	for i := len(g.snaps) - 1; i >= 0; i-- {
		if g.snaps[i].version == version {
			return i
		}
	}
	return -1
}

// evictLocked drops the least recently used quarter of the groups.
func (h *memberHistory) evictLocked() {
	type use struct {
		id string
		at time.Time
	}
	us := make([]use, 0, len(h.groups))
	for id, g := range h.groups {
		us = append(us, use{id, g.used})
	}
	slices.SortFunc(us, func(a, b use) int { return a.at.Compare(b.at) })
	for _, u := range us[:max(len(us)/4, 1)] {
		delete(h.groups, u.id)
	}
}

// delta is the change from the list of version base to the group's list
// of version next (recorded before), or false when base is not held here
// (the node then gets the whole list). The delta is shared: callers must
// not modify it.
func (h *memberHistory) delta(group, base, next string) (*nodeapi.MembersDelta, bool) {
	if base == next {
		return &nodeapi.MembersDelta{Base: base}, true
	}
	now := h.now()
	h.mu.Lock()
	defer h.mu.Unlock()
	g := h.groups[group]
	if g == nil {
		return nil, false
	}
	h.pruneLocked(g, now)
	k := deltaKey{base, next}
	if d, ok := g.deltas[k]; ok {
		return d, true
	}
	bi, ni := g.find(base), g.find(next)
	if bi < 0 || ni < 0 {
		return nil, false
	}
	// Computed under the lock: a few thousand addresses at most, once
	// per pair, and the nodes woken together all want the same pair.
	added, removed := nodeapi.DiffMembers(g.snaps[bi].members, g.snaps[ni].members)
	d := &nodeapi.MembersDelta{Base: base, Added: added, Removed: removed}
	if g.deltas == nil || len(g.deltas) >= maxDeltasCached {
		g.deltas = map[deltaKey]*nodeapi.MembersDelta{}
	}
	g.deltas[k] = d
	return d, true
}

// size is how many groups and lists are held (for tests).
func (h *memberHistory) size() (groups, lists int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, g := range h.groups {
		lists += len(g.snaps)
	}
	return len(h.groups), lists
}

// answerFor is d as the node with the held member lists (group ->
// version) is sent it: each versioned list the node holds a version of
// that is still known here comes as a delta (empty when unchanged), the
// others whole. d itself is not modified.
func (h *memberHistory) answerFor(d nodeapi.Desired, held map[string]string) nodeapi.Desired {
	if len(held) == 0 {
		return d
	}
	groups := slices.Clone(d.SecurityGroups)
	for i := range groups {
		g := &groups[i]
		base, ok := held[g.ID]
		if !ok || g.MembersVersion == "" {
			continue
		}
		if delta, ok := h.delta(g.ID, base, g.MembersVersion); ok {
			g.Members, g.MembersDelta = nil, delta
		}
	}
	d.SecurityGroups = groups
	return d
}
