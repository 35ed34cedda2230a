package retry

import (
	"context"
	"errors"
	"testing"
	"time"
)

var (
	errTransient = errors.New("transient")
	errFatal     = errors.New("fatal")
)

func TestDo(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		p      Policy
		fails  []error // what fn returns on each try; nil after
		tries  int
		wantIs error
	}{
		{"first try", Policy{Attempts: 3}, nil, 1, nil},
		{"succeeds on the third", Policy{Attempts: 3}, []error{errTransient, errTransient}, 3, nil},
		{"attempts run out", Policy{Attempts: 3}, []error{errTransient, errTransient, errTransient, errTransient}, 3, errTransient},
		{"not retryable", Policy{Retryable: func(err error) bool { return errors.Is(err, errTransient) }},
			[]error{errTransient, errFatal, errTransient}, 2, errFatal},
		{"unlimited until success", Policy{}, []error{errTransient, errTransient, errTransient, errTransient, errTransient}, 6, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tries := 0
			var retried []int
			tc.p.OnRetry = func(err error, attempt int, _ time.Duration) { retried = append(retried, attempt) }
			err := Do(ctx, tc.p, func(attempt int) error {
				if attempt != tries {
					t.Errorf("attempt %d on try %d", attempt, tries)
				}
				tries++
				if attempt < len(tc.fails) {
					return tc.fails[attempt]
				}
				return nil
			})
			if tries != tc.tries || !errors.Is(err, tc.wantIs) || (tc.wantIs == nil && err != nil) {
				t.Fatalf("%d tries, err %v; want %d tries, %v", tries, err, tc.tries, tc.wantIs)
			}
			if len(retried) != tries-1 && err == nil {
				t.Errorf("OnRetry told of %v", retried)
			}
		})
	}
}

// TestBackoffDoubles checks the pauses OnRetry is told of: doubling from
// Wait, capped at MaxWait.
func TestBackoffDoubles(t *testing.T) {
	var waits []time.Duration
	p := Policy{Attempts: 6, Wait: time.Microsecond, MaxWait: 5 * time.Microsecond,
		OnRetry: func(_ error, _ int, w time.Duration) { waits = append(waits, w) }}
	Do(context.Background(), p, func(int) error { return errTransient })
	want := []time.Duration{1, 2, 4, 5, 5}
	if len(waits) != len(want) {
		t.Fatalf("waits %v", waits)
	}
	for i := range want {
		if waits[i] != want[i]*time.Microsecond {
			t.Fatalf("waits %v, want %v µs", waits, want)
		}
	}
}

// TestContextEnds: a cancelled wait returns the context's error with the
// last failure, at once.
func TestContextEnds(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	err := Do(ctx, Policy{Wait: time.Hour}, func(int) error {
		cancel()
		return errTransient
	})
	if !errors.Is(err, context.Canceled) || !errors.Is(err, errTransient) {
		t.Fatalf("err %v", err)
	}
}

// TestForGivesUp: with a time budget already spent, the first failure is
// final.
func TestForGivesUp(t *testing.T) {
	tries := 0
	err := Do(context.Background(), Policy{For: time.Nanosecond}, func(int) error {
		tries++
		return errTransient
	})
	if tries != 1 || !errors.Is(err, errTransient) {
		t.Fatalf("%d tries, %v", tries, err)
	}
}
