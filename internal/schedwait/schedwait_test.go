package schedwait

import (
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// The percentiles are those of the waits counted between the two
// samples, not since the process started, read by their bucket's upper
// bound (the lower one for the unbounded last bucket).
func TestSince(t *testing.T) {
	bounds := []float64{0, 1e-6, 1e-3, 1, math.Inf(1)}
	before := Sample{Bounds: bounds, Counts: []uint64{0, 1000, 0, 0}}
	after := Sample{Bounds: bounds, Counts: []uint64{0, 1098, 1, 1}}
	for _, c := range []struct {
		p    float64
		want time.Duration
	}{{50, time.Millisecond}, {98, time.Millisecond}, {99, time.Second}, {100, time.Second}} {
		if got := after.Since(before, c.p); got != c.want {
			t.Errorf("p%g %s, want %s", c.p, got, c.want)
		}
	}
	if got := before.Since(before, 99); got != 0 {
		t.Errorf("no waits: %s, want 0", got)
	}
	if got := after.Since(Sample{}, 99); got != 0 {
		t.Errorf("against an empty sample: %s, want 0", got)
	}
}

// What Handler serves parses back to what Read gave, the runtime's
// unbounded last bucket included; anything else is an error.
func TestHandlerParse(t *testing.T) {
	srv := httptest.NewServer(nil)
	srv.Config.Handler = http.HandlerFunc(Handler)
	defer srv.Close()
	got, err := Fetch(srv.Client(), srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	want := Read()
	if len(got.Counts) != len(want.Counts) || len(got.Bounds) != len(want.Bounds) || len(got.Counts) == 0 {
		t.Fatalf("parsed %d counts and %d bounds, the runtime has %d and %d", len(got.Counts), len(got.Bounds), len(want.Counts), len(want.Bounds))
	}
	for i, b := range want.Bounds {
		if got.Bounds[i] != b {
			t.Fatalf("bound %d: %g, want %g", i, got.Bounds[i], b)
		}
	}
	for _, bad := range []string{"", "0 1\n", "0 1\n1\n2 3\n", "x 1\n1\n", "0 -1\n1\n", "0 1 2\n1\n"} {
		if _, err := Parse(strings.NewReader(bad)); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}
