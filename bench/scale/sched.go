package scale

import (
	"math"
	"runtime/metrics"
	"time"
)

// The load generator shares the machine's cores with the controller it
// measures, and its 10,000 simulated nodes are tens of thousands of
// goroutines: a paced call's goroutine, or a node's receiving one, can
// wait for a CPU behind them, and that wait is counted in the latencies
// it reports. schedWaits reads how long the generator's goroutines waited
// to run (the runtime's /sched/latencies:seconds) over a window, so a
// report says how much of a tail may be the generator's own.
const schedMetric = "/sched/latencies:seconds"

// schedSample is the runtime's cumulative histogram of goroutine waits.
type schedSample struct{ h *metrics.Float64Histogram }

func readSched() schedSample {
	s := []metrics.Sample{{Name: schedMetric}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindFloat64Histogram {
		return schedSample{}
	}
	h := s[0].Value.Float64Histogram()
	// The runtime reuses nothing it returns, but copy the counts: the
	// next Read must not change this sample.
	return schedSample{h: &metrics.Float64Histogram{Counts: append([]uint64(nil), h.Counts...), Buckets: h.Buckets}}
}

// waitsSince is the p-th percentile (0-100) of the waits counted since
// before, by the upper bound of its bucket; 0 when none was counted.
func (now schedSample) waitsSince(before schedSample, p float64) time.Duration {
	if now.h == nil || before.h == nil || len(now.h.Counts) != len(before.h.Counts) {
		return 0
	}
	var total uint64
	for i := range now.h.Counts {
		total += now.h.Counts[i] - before.h.Counts[i]
	}
	if total == 0 {
		return 0
	}
	want := uint64(float64(total)*p/100 + 0.5)
	var seen uint64
	for i := range now.h.Counts {
		seen += now.h.Counts[i] - before.h.Counts[i]
		if seen >= want && seen > 0 {
			hi := now.h.Buckets[i+1]
			if math.IsInf(hi, 1) { // the last bucket is unbounded
				hi = now.h.Buckets[i]
			}
			return time.Duration(hi * float64(time.Second))
		}
	}
	return 0
}
