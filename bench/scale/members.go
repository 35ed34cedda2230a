package scale

import (
	"sync"
	"time"
)

// memberClock times each launched instance's address reaching the nodes
// that hold its security group's member list (as a delta's addition):
// what a peer's firewall waits for before it lets the new instance in.
// Every arrival counts, on every node, so the percentiles are over
// (node, address) pairs. A histogram of milliseconds keeps it small: a
// run at 100,000 instances sees about ten million arrivals.
type memberClock struct {
	mu    sync.Mutex
	sent  map[string]time.Time   // address -> its RunInstances was sent
	early map[string][]time.Time // arrivals before the bench knew the address
	hist  []int64                // hist[ms] counts arrivals that took ms
	n     int64
}

// memberClockMax is the histogram's last bucket, which also holds every
// slower arrival.
const memberClockMax = 10 * time.Minute

func newMemberClock() *memberClock {
	return &memberClock{sent: map[string]time.Time{}, early: map[string][]time.Time{},
		hist: make([]int64, memberClockMax/time.Millisecond+1)}
}

// launched records that the address's RunInstances was sent at t0, and
// counts the arrivals that came before the call returned.
func (c *memberClock) launched(addr string, t0 time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sent[addr] = t0
	for _, at := range c.early[addr] {
		c.count(at.Sub(t0))
	}
	delete(c.early, addr)
}

// arrived is simnode.Config.OnMembers.
func (c *memberClock) arrived(added []string, at time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, a := range added {
		if t0, ok := c.sent[a]; ok {
			c.count(at.Sub(t0))
		} else {
			c.early[a] = append(c.early[a], at)
		}
	}
}

func (c *memberClock) count(d time.Duration) {
	i := min(max(int(d/time.Millisecond), 0), len(c.hist)-1)
	c.hist[i]++
	c.n++
}

// percentile is the p-th percentile of the arrivals counted so far, to
// the millisecond, and how many there were.
func (c *memberClock) percentile(p int) (time.Duration, int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == 0 {
		return 0, 0
	}
	want := (c.n*int64(p) + 99) / 100
	var seen int64
	for ms, k := range c.hist {
		if seen += k; seen >= max(want, 1) {
			return time.Duration(ms) * time.Millisecond, c.n
		}
	}
	return memberClockMax, c.n
}
