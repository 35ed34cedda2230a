package controller

import (
	"context"
	"time"
)

// A launch places under the placement lock, which every launch queues
// behind, and placement works from copies (the node table, node usage,
// the private addresses taken) that are kept fresh in the background
// while launches come. After a quiet spell they are past their age, and
// the first launch read them whole under the lock: at 10,000 nodes and
// 100,000 instances on PostgreSQL that held the lock for about a second
// while the next launches queued (paced launches after a pause took over a
// second each). warmPlacement makes those reads before the launch
// queues; under the lock, the copies are checked against the launch
// sequence as before, so a read made here is never trusted past a launch
// it did not see.

// PlacementWarmer is a Placer that can make, before a launch queues, the
// reads its next Place would otherwise make under the placement lock
// (cluster.Service: the node table).
type PlacementWarmer interface {
	WarmPlacement(ctx context.Context) error
}

// takenIPsAhead is how long before takenIPsTTL the copy of taken
// addresses is reread in the background, so launches rarely find it past
// its age.
const takenIPsAhead = 10 * time.Second

// warmPlacement readies placement's copies before a launch queues: what
// would be read whole under the lock is read now (one launch reads, the
// ones arriving meanwhile wait for it: they would have queued anyway). A
// failure is left to the launch, which reads under the lock as before.
func (c *Cloud) warmPlacement(ctx context.Context) {
	c.warmMu.Lock()
	defer c.warmMu.Unlock()
	if w, ok := c.placer.(PlacementWarmer); ok {
		if err := w.WarmPlacement(ctx); err != nil && ctx.Err() == nil {
			c.log.Warn("node table for placement", "err", err)
		}
	}
	if err := c.warmUsage(ctx); err != nil && ctx.Err() == nil {
		c.log.Warn("node usage for placement", "err", err)
	}
	switch c.takenIPsAge() {
	case ageExpired:
		if err := c.warmTakenIPs(ctx); err != nil && ctx.Err() == nil {
			c.log.Warn("private addresses for placement", "err", err)
		}
	case ageAging:
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := c.warmTakenIPs(ctx); err != nil {
				c.log.Warn("private addresses for placement", "err", err)
			}
		}()
	}
}

type copyAge int

const (
	ageFresh   copyAge = iota
	ageAging           // to be reread soon: in the background
	ageExpired         // the next launch would reread it under the lock
)

func (c *Cloud) takenIPsAge() copyAge {
	t := &c.takenIPs
	t.mu.Lock()
	defer t.mu.Unlock()
	switch age := time.Since(t.read); {
	case t.warming:
		return ageFresh
	case t.set == nil || age >= takenIPsTTL:
		return ageExpired
	case age >= takenIPsTTL-takenIPsAhead:
		return ageAging
	}
	return ageFresh
}

// warmUsage reads node_usage whole when the next placement would (no
// copy, or one past usageMaxAge).
func (c *Cloud) warmUsage(ctx context.Context) error {
	uc := &c.usageCache
	uc.mu.Lock()
	expired := uc.at.IsZero() || time.Since(uc.at) >= usageMaxAge
	uc.mu.Unlock()
	if !expired {
		return nil
	}
	_, err := c.readUsageInto(ctx)
	return err
}

// warmTakenIPs reads the taken private addresses whole, outside the
// placement lock, and makes them the copy with the addresses launches
// picked meanwhile, unless a newer whole read was made meanwhile.
func (c *Cloud) warmTakenIPs(ctx context.Context) error {
	t := &c.takenIPs
	t.mu.Lock()
	if t.warming {
		t.mu.Unlock()
		return nil
	}
	t.warming = true
	epoch := t.epoch
	// The launch under way may commit after the read's snapshot.
	carry := t.pending
	t.picked = nil
	t.mu.Unlock()
	set, seq, err := livePrivateIPsAt(ctx, c.db)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.warming = false
	if err != nil {
		return err
	}
	t.installWarm(set, seq, epoch, carry)
	return nil
}

// installWarm makes a read made outside the placement lock at launch
// sequence seq the copy, unless a whole read newer than epoch was
// installed meanwhile. carry are the picks under way when it began.
func (t *takenIPs) installWarm(set map[string]bool, seq int64, epoch uint64, carry []string) {
	if t.epoch != epoch {
		return
	}
	// The launch that was under way when the read began, and those that
	// picked while it ran, may commit after its snapshot: their picks stay
	// taken. One that failed leaves its picks marked until the next whole
	// read (the next address up is taken instead: never a wrong one).
	for _, ip := range carry {
		set[ip] = true
	}
	for _, ip := range t.picked {
		set[ip] = true
	}
	// The copy may be exact at a later sequence than the read's snapshot:
	// this controller's launches that committed meanwhile. Every launch
	// after the copy's own whole read was this controller's (it is exact),
	// the read began after that one, and the launches after its snapshot
	// are among carry and picked: the new copy is exact there too. Taking
	// the read's older sequence instead made every launch after it check
	// its picks against the store (a round trip under the placement lock,
	// each launch of a batch) until the next whole read, up to
	// takenIPsTTL later.
	if t.seqKnown && t.seq > seq {
		seq = t.seq
	}
	t.install(set, seq)
}
