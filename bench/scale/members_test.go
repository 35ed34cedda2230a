package scale

import (
	"testing"
	"time"
)

// An arrival is timed from its launch's call, also when it came before
// the call returned, and slower ones than the histogram holds land in its
// last bucket.
func TestMemberClock(t *testing.T) {
	c := newMemberClock()
	t0 := time.Unix(1000, 0)
	c.arrived([]string{"10.88.0.5"}, t0.Add(40*time.Millisecond)) // before the call returned
	c.launched("10.88.0.5", t0)
	c.launched("10.88.0.6", t0)
	for i := range 97 {
		c.arrived([]string{"10.88.0.6"}, t0.Add(time.Duration(i+1)*time.Millisecond))
	}
	c.arrived([]string{"10.88.0.6", "10.88.0.5"}, t0.Add(time.Hour))
	c.arrived([]string{"10.99.9.9"}, t0) // never launched: not counted
	if p, n := c.percentile(50); n != 100 || p != 49*time.Millisecond {
		t.Errorf("p50 = %s of %d arrivals, want 49ms of 100", p, n)
	}
	if p, _ := c.percentile(99); p != memberClockMax {
		t.Errorf("p99 = %s, want the last bucket %s", p, memberClockMax)
	}
	if p, n := newMemberClock().percentile(99); p != 0 || n != 0 {
		t.Errorf("empty clock: %s of %d", p, n)
	}
}

// The controller's request lines give each call's duration.
func TestLoggedDurations(t *testing.T) {
	log := `time=2026-12-01T04:00:00.000Z level=INFO msg="ec2 request" request_id=a action=RunInstances account=x status=200 duration=12.5ms remote=127.0.0.1:1
time=2026-12-01T04:00:00.001Z level=INFO msg="ec2 request" request_id=b action=DescribeInstances account=x status=200 duration=3ms remote=127.0.0.1:1
time=2026-12-01T04:00:00.002Z level=INFO msg="ec2 request" request_id=c action=RunInstances account=x status=200 duration=1.2s remote=127.0.0.1:1
time=2026-12-01T04:00:00.003Z level=INFO msg="ec2 request" request_id=d action=RunInstances account=x status=200 duration=`
	got := loggedDurations(log, "RunInstances")
	if len(got) != 2 || got[0] != 12500*time.Microsecond || got[1] != 1200*time.Millisecond {
		t.Fatalf("loggedDurations = %v, want [12.5ms 1.2s]", got)
	}
}
