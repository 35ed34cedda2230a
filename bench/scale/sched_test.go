package scale

import (
	"math"
	"runtime/metrics"
	"testing"
	"time"
)

// The percentiles are those of the waits counted between the two
// samples, not since the process started, read by their bucket's upper
// bound.
func TestSchedWaits(t *testing.T) {
	buckets := []float64{0, 1e-6, 1e-3, 1, math.Inf(1)}
	at := func(counts ...uint64) schedSample {
		return schedSample{h: &metrics.Float64Histogram{Counts: counts, Buckets: buckets}}
	}
	before := at(0, 1000, 0, 0)
	after := at(0, 1098, 1, 1)
	if got := after.waitsSince(before, 50); got != time.Millisecond {
		t.Errorf("p50 %s, want 1ms (98 of the 100 waits under it)", got)
	}
	if got := after.waitsSince(before, 99); got != time.Second {
		t.Errorf("p99 %s, want 1s", got)
	}
	if got := after.waitsSince(before, 100); got != time.Second {
		t.Errorf("p100 %s, want 1s (the unbounded bucket's lower bound)", got)
	}
	if got := before.waitsSince(before, 99); got != 0 {
		t.Errorf("no waits: %s, want 0", got)
	}
	if s := readSched(); s.h == nil || len(s.h.Counts) == 0 {
		t.Fatalf("the runtime has no %s", schedMetric)
	}
}
