package gather

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// waitFor polls until n calls wait in the open group.
func waitFor[In, Out any](t *testing.T, g *Gatherer[In, Out], n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for g.Waiting() != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d calls waiting, want %d", g.Waiting(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestGroupsCallsWhileOneRuns(t *testing.T) {
	var mu sync.Mutex
	var groups [][]int
	g := New(func(_ context.Context, in []int) ([]int, error) {
		mu.Lock()
		groups = append(groups, append([]int(nil), in...))
		mu.Unlock()
		out := make([]int, len(in))
		for i, v := range in {
			out[i] = v * v
		}
		return out, nil
	}, 0, time.Minute)

	release := g.Hold()
	const calls = 50
	var wg sync.WaitGroup
	got := make([]int, calls)
	errs := make([]error, calls)
	for i := range calls {
		wg.Go(func() { got[i], errs[i] = g.Do(context.Background(), i) })
	}
	waitFor(t, g, calls)
	release()
	wg.Wait()
	for i := range calls {
		if errs[i] != nil || got[i] != i*i {
			t.Errorf("call %d: %d, %v; want %d", i, got[i], errs[i], i*i)
		}
	}
	if len(groups) != 1 || len(groups[0]) != calls {
		t.Errorf("groups %v, want one of %d", groups, calls)
	}
	if g.Runs() != 1 {
		t.Errorf("Runs %d, want 1", g.Runs())
	}
	// Alone, a call runs as its own group.
	if v, err := g.Do(context.Background(), 7); v != 49 || err != nil {
		t.Errorf("lone call: %d, %v", v, err)
	}
	if g.Runs() != 2 {
		t.Errorf("Runs %d, want 2", g.Runs())
	}
}

func TestErrorReachesEveryCaller(t *testing.T) {
	boom := errors.New("store gone")
	g := New(func(context.Context, []string) ([]bool, error) { return nil, boom }, 0, time.Minute)
	release := g.Hold()
	var wg sync.WaitGroup
	errs := make([]error, 5)
	for i := range errs {
		wg.Go(func() { _, errs[i] = g.Do(context.Background(), "x") })
	}
	waitFor(t, g, len(errs))
	release()
	wg.Wait()
	for i, err := range errs {
		if !errors.Is(err, boom) {
			t.Errorf("call %d: %v, want %v", i, err, boom)
		}
	}
}

func TestShortResultIsAnError(t *testing.T) {
	g := New(func(context.Context, []int) ([]int, error) { return nil, nil }, 0, time.Minute)
	if _, err := g.Do(context.Background(), 1); err == nil || !strings.Contains(err.Error(), "0 results for 1 calls") {
		t.Errorf("got %v, want a count mismatch", err)
	}
}

// The leader's caller giving up neither cancels the group's run nor
// fails the others in it. (The leader runs the group in its own call, so
// it returns once the run is done, with its result or its context's end.)
func TestLeaderGoingAwayKeepsTheGroup(t *testing.T) {
	var runCtxErr error
	g := New(func(ctx context.Context, in []int) ([]int, error) {
		runCtxErr = ctx.Err()
		return in, nil
	}, 0, time.Minute)

	release := g.Hold()
	lctx, cancel := context.WithCancel(context.Background())
	leaderErr := make(chan error, 1)
	go func() { _, err := g.Do(lctx, 1); leaderErr <- err }()
	waitFor(t, g, 1)
	other := make(chan int, 1)
	go func() { v, _ := g.Do(context.Background(), 2); other <- v }()
	waitFor(t, g, 2)
	cancel()
	release()
	if err := <-leaderErr; err != nil && !errors.Is(err, context.Canceled) {
		t.Errorf("leader: %v, want its result or canceled", err)
	}
	if v := <-other; v != 2 {
		t.Errorf("other caller got %d, want 2", v)
	}
	if runCtxErr != nil {
		t.Errorf("the group's run saw %v", runCtxErr)
	}
}

// ByKey reads each distinct key once, chunk keys at a time, and answers
// every ask in order, a key read found nothing for with the zero value;
// a read's error is the call's.
func TestByKey(t *testing.T) {
	var calls [][]string
	read := func(_ context.Context, keys []string, got map[string]int) error {
		calls = append(calls, slices.Clone(keys))
		for _, k := range keys {
			if k != "none" {
				got[k] = len(k)
			}
		}
		return nil
	}
	out, err := ByKey(context.Background(), []string{"ccc", "a", "ccc", "none", "bb"}, 2, read)
	if err != nil {
		t.Fatal(err)
	}
	if want := []int{3, 1, 3, 0, 2}; !slices.Equal(out, want) {
		t.Fatalf("got %v, want %v", out, want)
	}
	if want := [][]string{{"a", "bb"}, {"ccc", "none"}}; !slices.EqualFunc(calls, want, slices.Equal) {
		t.Fatalf("reads %v, want %v", calls, want)
	}
	boom := errors.New("boom")
	if _, err := ByKey(context.Background(), []string{"a"}, 2, func(context.Context, []string, map[string]int) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("error %v, want boom", err)
	}
}
