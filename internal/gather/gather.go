// Package gather runs the calls that arrive while one is running as one
// call. The controller's heartbeat writes and authentication reads come
// from thousands of nodes at once; one query each, they queue for the
// store's connections and hold them. Gathered, a busy store serves bigger
// groups, not more of them.
//
// The first call to arrive opens a group and leads it: it waits the
// window (if any), then for the group before it to finish, and only then
// closes its group and runs it. Calls arriving meanwhile join the group.
// One group runs at a time, so when the store is slow the calls waiting
// for it wait as one group, not as one query each in the store's queue.
package gather

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Func runs one group: it returns one result per input, in order.
type Func[In, Out any] func(ctx context.Context, in []In) ([]Out, error)

// Gatherer gathers calls into groups run by one Func.
type Gatherer[In, Out any] struct {
	run     Func[In, Out]
	window  time.Duration
	timeout time.Duration

	mu      sync.Mutex
	open    *group[In, Out] // collecting, nil when none
	running sync.Mutex      // held by the group being run
	runs    atomic.Int64
}

type group[In, Out any] struct {
	in   []In
	out  []Out
	err  error
	done chan struct{}
}

// New returns a Gatherer running groups with run. A group's leader waits
// window for others before it runs (0: run as soon as the group before
// it is done). A group gets timeout to run, whatever its callers'
// contexts: it is everyone's, so the leader's caller going away does not
// fail the others.
func New[In, Out any](run Func[In, Out], window, timeout time.Duration) *Gatherer[In, Out] {
	return &Gatherer[In, Out]{run: run, window: window, timeout: timeout}
}

// Do adds in to the open group and returns its result once the group has
// run. The group runs after Do was called, so a read it makes is as fresh
// as one made by the call alone. A caller whose context ends stops
// waiting; its input stays in the group.
func (g *Gatherer[In, Out]) Do(ctx context.Context, in In) (Out, error) {
	g.mu.Lock()
	gr := g.open
	lead := gr == nil
	if lead {
		gr = &group[In, Out]{done: make(chan struct{})}
		g.open = gr
	}
	gr.in = append(gr.in, in)
	mine := len(gr.in) - 1
	g.mu.Unlock()
	if lead {
		g.lead(ctx, gr)
	}
	var zero Out
	select {
	case <-gr.done:
	case <-ctx.Done():
		return zero, ctx.Err()
	}
	if gr.err != nil {
		return zero, gr.err
	}
	return gr.out[mine], nil
}

func (g *Gatherer[In, Out]) lead(ctx context.Context, gr *group[In, Out]) {
	defer close(gr.done)
	if g.window > 0 {
		t := time.NewTimer(g.window)
		<-t.C
	}
	g.running.Lock()
	defer g.running.Unlock()
	g.mu.Lock()
	g.open = nil // from here on, callers join the next group
	g.mu.Unlock()
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), g.timeout)
	defer cancel()
	gr.out, gr.err = g.run(rctx, gr.in)
	g.runs.Add(1)
	if gr.err == nil && len(gr.out) != len(gr.in) {
		gr.err = fmt.Errorf("gather: %d results for %d calls", len(gr.out), len(gr.in))
	}
}

// Runs is the number of groups run so far.
func (g *Gatherer[In, Out]) Runs() int64 { return g.runs.Load() }

// Waiting is the number of calls in the open group (not yet running).
func (g *Gatherer[In, Out]) Waiting() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.open == nil {
		return 0
	}
	return len(g.open.in)
}

// Hold keeps the next group from running, as a running group would,
// until the returned func is called. Calls made meanwhile gather into one
// group. For tests that need a known grouping.
func (g *Gatherer[In, Out]) Hold() (release func()) {
	g.running.Lock()
	return g.running.Unlock
}

// ByKey is the usual body of a Func that reads by key: it reads the
// distinct keys asked for, at most chunk per call of read (which fills
// got), and returns each ask's value in order; a key read found nothing
// for gets V's zero value.
func ByKey[K cmp.Ordered, V any](ctx context.Context, asked []K, chunk int,
	read func(ctx context.Context, keys []K, got map[K]V) error) ([]V, error) {
	keys := slices.Compact(slices.Sorted(slices.Values(asked)))
	got := make(map[K]V, len(keys))
	for len(keys) > 0 {
		part := keys[:min(len(keys), chunk)]
		keys = keys[len(part):]
		if err := read(ctx, part, got); err != nil {
			return nil, err
		}
	}
	out := make([]V, len(asked))
	for i, k := range asked {
		out[i] = got[k]
	}
	return out, nil
}
