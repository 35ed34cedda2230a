package controller

import (
	"context"
	"encoding/json"
	"slices"
	"sync"
	"time"

	"ironbark/internal/nodeapi"
)

// A launch into a group changes what every node enforcing the group is
// told (the group's member addresses), so the cluster side wakes those
// nodes together, and each rereads its desired state. Read one node at a
// time, a group's members cost a scan of its account's instances per
// node: a launch into an account of a thousand instances spread over a
// hundred nodes read a hundred thousand rows. memberReads lets the nodes
// woken together share one read per group: a node's answer may use a
// read that started at or after the node was woken (it then sees every
// change committed before the wake-up), and otherwise starts one that
// the nodes woken with it can join.
type memberReads struct {
	mu    sync.Mutex
	reads map[string]*memberRead // group ID -> its latest read
}

type memberRead struct {
	started time.Time
	done    chan struct{}
	members []string // the group's live members' addresses, sorted
	version string   // nodeapi.MembersVersion of members
	err     error
}

// maxMemberReads bounds the reads kept; past it the finished ones are
// dropped (they only serve nodes woken before they started reading).
const maxMemberReads = 4096

// members returns the group's members and their version
// (nodeapi.MembersVersion, computed once per read) from a read that
// started at or after fresh, starting one with load if none did.
func (m *memberReads) members(ctx context.Context, group string, fresh time.Time,
	load func(ctx context.Context) ([]string, error)) ([]string, string, error) {
	for {
		m.mu.Lock()
		if m.reads == nil {
			m.reads = map[string]*memberRead{}
		}
		r := m.reads[group]
		switch {
		case r != nil && !r.started.Before(fresh) && !(finished(r) && r.err != nil):
			// Fresh enough: join it, or take what it read.
			m.mu.Unlock()
			select {
			case <-r.done:
				return r.members, r.version, r.err
			case <-ctx.Done():
				return nil, "", ctx.Err()
			}
		case r != nil && !finished(r):
			// Too old for this caller but still reading: wait for it,
			// then start (or join) the next one, so the callers that
			// arrive meanwhile share that one.
			m.mu.Unlock()
			select {
			case <-r.done:
			case <-ctx.Done():
				return nil, "", ctx.Err()
			}
			continue
		}
		if len(m.reads) >= maxMemberReads {
			for g, old := range m.reads {
				if finished(old) {
					delete(m.reads, g)
				}
			}
		}
		r = &memberRead{started: time.Now(), done: make(chan struct{})}
		m.reads[group] = r
		m.mu.Unlock()
		// The read is every joiner's: one caller going away does not
		// fail the others.
		r.members, r.err = load(context.WithoutCancel(ctx))
		if r.err == nil {
			r.version = nodeapi.MembersVersion(r.members)
		}
		close(r.done)
		return r.members, r.version, r.err
	}
}

func finished(r *memberRead) bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

// groupLists caches groupIDs' parse of a reservation's groups column: a
// node's answer reads it for each instance on the node and for each member
// of the groups its rules name, and one cloud has few distinct values (an
// account's default group, a handful of combinations).
type groupLists struct {
	mu sync.Mutex
	m  map[string][]string
}

const maxGroupLists = 8192

// of returns the sorted, distinct group IDs of a groups column; callers
// must not modify the slice.
func (g *groupLists) of(js string) []string {
	g.mu.Lock()
	ids, ok := g.m[js]
	g.mu.Unlock()
	if ok {
		return ids
	}
	ids = groupIDs(js)
	g.mu.Lock()
	if g.m == nil || len(g.m) >= maxGroupLists {
		g.m = map[string][]string{}
	}
	g.m[js] = ids
	g.mu.Unlock()
	return ids
}

// groupIDs reads a reservation's groups column.
func groupIDs(js string) []string {
	var gs []GroupIdentifier
	if json.Unmarshal([]byte(js), &gs) != nil {
		return nil
	}
	out := make([]string, 0, len(gs))
	for _, g := range gs {
		out = append(out, g.GroupID)
	}
	slices.Sort(out)
	return slices.Compact(out)
}
