package controller

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// freshRuns shares a read between callers only when the read started at
// or after the caller's fresh time: a caller never gets members read
// before the change it was woken for.
func TestFreshRunsFreshness(t *testing.T) {
	ctx := context.Background()
	var m freshRuns[[]string]
	var version atomic.Int64 // what the "store" holds
	var loads atomic.Int64
	started := make(chan struct{}, 1)
	release := make(chan struct{})
	var block atomic.Bool
	load := func(context.Context) ([]string, error) {
		loads.Add(1)
		v := version.Load()
		if block.Load() {
			started <- struct{}{}
			<-release
		}
		return []string{strconv.FormatInt(v, 10)}, nil
	}
	get := func(fresh time.Time) string {
		t.Helper()
		ms, err := m.do(ctx, fresh, load)
		if err != nil || len(ms) != 1 {
			t.Fatalf("members: %v %v", ms, err)
		}
		return ms[0]
	}

	woke := time.Now()
	first := get(woke)
	// Woken at the same moment: the read that started after it serves.
	if again := get(woke); again != first || loads.Load() != 1 {
		t.Fatalf("a second node woken with the first read again (%d loads, %q then %q)", loads.Load(), first, again)
	}
	// A change, then a wake-up: the earlier read is too old.
	version.Store(1)
	if got := get(time.Now()); got == first || loads.Load() != 2 {
		t.Fatalf("after a change: %q (%d loads), want a new read", got, loads.Load())
	}

	// A read in flight that started before the caller was woken is not
	// joined: the caller waits for it and reads anew.
	block.Store(true)
	old := make(chan string, 1)
	go func() { old <- get(time.Now()) }()
	<-started
	block.Store(false)
	version.Store(2)
	newer := make(chan string, 1)
	wokeLater := time.Now()
	go func() { newer <- get(wokeLater) }()
	close(release)
	o, n := <-old, <-newer
	if o != "1" || n != "2" {
		t.Fatalf("in-flight read %q, later caller %q; want the later caller to see the change", o, n)
	}

	// A failed read is not kept for later callers.
	var failed freshRuns[[]string]
	boom := errors.New("boom")
	if _, err := failed.do(ctx, time.Now(), func(context.Context) ([]string, error) { return nil, boom }); !errors.Is(err, boom) {
		t.Fatalf("failed read: %v", err)
	}
	ms, err := failed.do(ctx, time.Time{}, func(context.Context) ([]string, error) { return []string{"10.0.0.1"}, nil })
	if err != nil || !slices.Equal(ms, []string{"10.0.0.1"}) {
		t.Fatalf("after a failed read: %v %v", ms, err)
	}
}
