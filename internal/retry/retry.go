// Package retry runs an operation again after transient failures: a
// controller restarting under a node's enrollment, a frontend away under
// the installer, a serialization failure in a PostgreSQL transaction, two
// servers taking the same address. One loop with one backoff, so each
// caller only says what is worth retrying and how patient to be.
package retry

import (
	"context"
	"fmt"
	"time"
)

// Policy says how often and how patiently to try.
type Policy struct {
	// Attempts is the number of tries in all; 0 means no limit (until
	// For passes or the context ends).
	Attempts int
	// For gives up once this long has passed since the first try (the
	// last try may start just before); 0 means no limit.
	For time.Duration
	// Wait is the pause before the second try, doubled before each next
	// one up to MaxWait (Wait when zero). Zero Wait retries at once.
	Wait, MaxWait time.Duration
	// Retryable reports whether a failure is worth another try; nil means
	// every error is.
	Retryable func(error) bool
	// OnRetry, when set, is told of each failure that will be retried and
	// of the pause before the next try (to log it).
	OnRetry func(err error, attempt int, wait time.Duration)
}

// Do calls fn until it succeeds, fails in a way Retryable rejects, or the
// policy's attempts or time run out, and returns fn's last error. When
// ctx ends while waiting, the error wraps ctx.Err() and says the last
// failure. attempt counts from 0.
func Do(ctx context.Context, p Policy, fn func(attempt int) error) error {
	start := time.Now()
	wait := p.Wait
	for attempt := 0; ; attempt++ {
		err := fn(attempt)
		if err == nil || (p.Retryable != nil && !p.Retryable(err)) ||
			(p.Attempts > 0 && attempt+1 >= p.Attempts) || (p.For > 0 && time.Since(start) >= p.For) {
			return err
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%w (last error: %w)", ctx.Err(), err)
		}
		if p.OnRetry != nil {
			p.OnRetry(err, attempt, wait)
		}
		if wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return fmt.Errorf("%w (last error: %w)", ctx.Err(), err)
			case <-t.C:
			}
			max := p.MaxWait
			if max == 0 {
				max = p.Wait
			}
			wait = min(wait*2, max)
		}
	}
}
