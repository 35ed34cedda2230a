package controller

import (
	"context"
	"encoding/json"
	"slices"
	"sync"
	"time"
)

// freshRuns shares a read between callers woken together: a caller needs
// a read that started at or after its fresh time (it then sees every
// change committed before it was woken), joins one that did, and
// otherwise starts one that the callers arriving meanwhile can join. Reads
// run one at a time. The zero value is ready.
type freshRuns[T any] struct {
	mu  sync.Mutex
	run *freshRun[T] // the latest
}

type freshRun[T any] struct {
	started time.Time
	done    chan struct{}
	val     T
	err     error
}

// do returns the result of a run of read that started at or after fresh.
func (f *freshRuns[T]) do(ctx context.Context, fresh time.Time, read func(context.Context) (T, error)) (T, error) {
	var zero T
	for {
		f.mu.Lock()
		r := f.run
		switch {
		case r != nil && !r.started.Before(fresh) && !(r.finished() && r.err != nil):
			// Fresh enough: join it, or take what it read.
			f.mu.Unlock()
			select {
			case <-r.done:
				return r.val, r.err
			case <-ctx.Done():
				return zero, ctx.Err()
			}
		case r != nil && !r.finished():
			// Too old for this caller but still reading: wait for it,
			// then start (or join) the next one.
			f.mu.Unlock()
			select {
			case <-r.done:
			case <-ctx.Done():
				return zero, ctx.Err()
			}
			continue
		}
		r = &freshRun[T]{started: time.Now(), done: make(chan struct{})}
		f.run = r
		f.mu.Unlock()
		// The read is every joiner's: one caller going away does not
		// fail the others.
		r.val, r.err = read(context.WithoutCancel(ctx))
		close(r.done)
		return r.val, r.err
	}
}

func (r *freshRun[T]) finished() bool {
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
