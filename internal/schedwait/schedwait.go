// Package schedwait reads how long a process's goroutines waited to run
// once runnable (the runtime's /sched/latencies:seconds), over a window:
// on a machine whose cores are all busy a latency can be mostly that
// wait, and this says so with a number. The controller serves its
// histogram on its debug listener (Handler) and bench/scale reads it and
// its own around the paced launches.
package schedwait

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"net/http"
	"runtime/metrics"
	"strconv"
	"strings"
	"time"
)

const metric = "/sched/latencies:seconds"

// Sample is the cumulative histogram of waits at one moment: Counts[i]
// waits of Bounds[i] to Bounds[i+1] seconds.
type Sample struct {
	Bounds []float64
	Counts []uint64
}

// Read samples this process.
func Read() Sample {
	s := []metrics.Sample{{Name: metric}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindFloat64Histogram {
		return Sample{}
	}
	h := s[0].Value.Float64Histogram()
	return Sample{Bounds: append([]float64(nil), h.Buckets...), Counts: append([]uint64(nil), h.Counts...)}
}

// Since is the p-th percentile (0-100) of the waits counted between
// before and s, as the upper bound of the bucket it fell in (the lower
// one for the last, unbounded bucket); 0 when none was counted or the
// samples do not match.
func (s Sample) Since(before Sample, p float64) time.Duration {
	if len(s.Counts) == 0 || len(s.Counts) != len(before.Counts) || len(s.Bounds) != len(s.Counts)+1 {
		return 0
	}
	var total uint64
	for i := range s.Counts {
		total += s.Counts[i] - before.Counts[i]
	}
	if total == 0 {
		return 0
	}
	want := max(uint64(math.Ceil(float64(total)*p/100)), 1)
	var seen uint64
	for i := range s.Counts {
		if seen += s.Counts[i] - before.Counts[i]; seen >= want {
			hi := s.Bounds[i+1]
			if math.IsInf(hi, 1) {
				hi = s.Bounds[i]
			}
			return time.Duration(hi * float64(time.Second))
		}
	}
	return 0
}

// Handler serves this process's sample as text: a line per bucket, its
// lower bound in seconds and its count, then the last upper bound alone.
func Handler(w http.ResponseWriter, _ *http.Request) {
	s := Read()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	for i, c := range s.Counts {
		fmt.Fprintf(w, "%g %d\n", s.Bounds[i], c)
	}
	if n := len(s.Bounds); n > 0 {
		fmt.Fprintf(w, "%g\n", s.Bounds[n-1])
	}
}

// Parse reads what Handler serves.
func Parse(r io.Reader) (Sample, error) {
	var s Sample
	sc := bufio.NewScanner(r)
	last := false
	for sc.Scan() {
		if last {
			return Sample{}, fmt.Errorf("sched waits: a line after the last bound: %q", sc.Text())
		}
		f := strings.Fields(sc.Text())
		if len(f) == 0 || len(f) > 2 {
			return Sample{}, fmt.Errorf("sched waits: bad line %q", sc.Text())
		}
		b, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			return Sample{}, fmt.Errorf("sched waits: bad bound %q", f[0])
		}
		s.Bounds = append(s.Bounds, b)
		if len(f) == 1 {
			last = true
			continue
		}
		c, err := strconv.ParseUint(f[1], 10, 64)
		if err != nil {
			return Sample{}, fmt.Errorf("sched waits: bad count %q", f[1])
		}
		s.Counts = append(s.Counts, c)
	}
	if err := sc.Err(); err != nil {
		return Sample{}, fmt.Errorf("sched waits: %w", err)
	}
	if !last || len(s.Counts) == 0 {
		return Sample{}, fmt.Errorf("sched waits: no histogram")
	}
	return s, nil
}

// Fetch reads the sample a Handler serves at url.
func Fetch(c *http.Client, url string) (Sample, error) {
	resp, err := c.Get(url)
	if err != nil {
		return Sample{}, fmt.Errorf("sched waits: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return Sample{}, fmt.Errorf("sched waits: %s: %s", url, resp.Status)
	}
	return Parse(io.LimitReader(resp.Body, 1<<20))
}
