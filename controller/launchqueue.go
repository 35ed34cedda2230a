package controller

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"ironbark/controller/ec2"
	"ironbark/internal/nodeapi"
	"ironbark/internal/store"
)

// Launches are placed one transaction at a time under the store's
// placement lock (PostgreSQL's advisory lock; SQLite's write lock), and
// this controller queues its own in memory rather than on the database.
// Each transaction is a handful of serial round trips (the lock; the
// client tokens, launch sequence and quotas; the writes; the commit). On a
// busy PostgreSQL each took 50–430 ms, so one launch held the queue for up
// to a second and the ones behind it waited in turn: at 10,000 nodes and
// 100,000 instances RunInstances' p99 was 2–3 s inside the controller.
//
// So the launch that finds the queue free places, in one transaction,
// every launch that queued behind it meanwhile (up to maxLaunchBatch): one
// lock, one read of all their tokens and quotas, one write batch, one
// commit. Each is placed in turn against the usage and addresses the ones
// before it took, and a launch refused on its own (no capacity, its quota,
// a token a batch-mate already took) gets its own answer while the others
// go on. A failure of the batch itself (the store's, or a refusal after a
// launch wrote in the transaction) rolls it back, and its launches are
// placed again one at a time, as they would have been without batching.
// The next launch queued behind the batch places the next one.

// maxLaunchBatch bounds the launches one transaction places.
const maxLaunchBatch = 32

// launchBatchTimeout bounds a batch of several launches: it runs for all
// of them, so no one client's cancellation ends it.
const launchBatchTimeout = 2 * time.Minute

// queuedLaunch is a launch in this controller's queue, and its answer.
type queuedLaunch struct {
	ctx  context.Context
	k    *call
	l    *launch
	nets map[string]zoneNet
	t0   time.Time // when it began to wait (warm reads included)

	res  *RunInstancesResponse
	err  error
	done chan struct{} // closed once res and err are set
	lead chan struct{} // closed when it is to place the next batch
}

// launchQueue is this controller's queue of launches: one batch places at
// a time, the launches waiting meanwhile are the next.
type launchQueue struct {
	mu      sync.Mutex
	busy    bool // a batch is being placed
	waiting []*queuedLaunch
}

// placeAndInsertQueued places the launch and persists its reservation,
// in this controller's queue of launches: with the ones that queued
// beside it, or alone. The wake-ups after the commit (the peers' member
// lists wait for a fresh read of the member log) run outside the queue:
// under it, at 10,000 nodes on PostgreSQL, they held each paced launch
// behind the one before for hundreds of milliseconds.
func (c *Cloud) placeAndInsertQueued(ctx context.Context, k *call, l *launch) (*RunInstancesResponse, error) {
	// The zones' networks are settings, read outside the placement's
	// transaction as before: before the queue, so the launches queued
	// behind this one do not wait for that round trip too.
	nets, err := c.zoneNets(ctx)
	if err != nil {
		return nil, err
	}
	// queued counts the warm reads too: the launch waits for them as it
	// would in the queue.
	q := &queuedLaunch{ctx: ctx, k: k, l: l, nets: nets, t0: time.Now(), done: make(chan struct{}), lead: make(chan struct{})}
	c.warmPlacement(ctx)
	lq := &c.launchQ
	lq.mu.Lock()
	if lq.busy {
		lq.waiting = append(lq.waiting, q)
		lq.mu.Unlock()
		select {
		case <-q.done:
			return q.res, q.err
		case <-q.lead:
		}
	} else {
		lq.busy = true
		lq.mu.Unlock()
	}
	c.leadLaunches(q)
	return q.res, q.err
}

// leadLaunches places first and the launches waiting behind it as one
// batch, then hands the queue to the next launch waiting, if any.
func (c *Cloud) leadLaunches(first *queuedLaunch) {
	lq := &c.launchQ
	lq.mu.Lock()
	n := min(len(lq.waiting), maxLaunchBatch-1)
	batch := make([]*queuedLaunch, 0, n+1)
	batch = append(append(batch, first), lq.waiting[:n]...)
	lq.waiting = append(lq.waiting[:0:0], lq.waiting[n:]...)
	lq.mu.Unlock()
	// The queue is handed on even if placing panics (the leader's request
	// fails with it): a queue left busy would hold every launch after.
	defer c.handOffLaunches()
	c.placeBatch(batch)
}

// handOffLaunches makes the first launch waiting the next batch's leader,
// or frees the queue.
func (c *Cloud) handOffLaunches() {
	lq := &c.launchQ
	lq.mu.Lock()
	if len(lq.waiting) == 0 {
		lq.busy = false
		lq.mu.Unlock()
		return
	}
	next := lq.waiting[0]
	lq.waiting = lq.waiting[1:]
	lq.mu.Unlock()
	close(next.lead)
}

// placeBatch places the batch's launches and answers each.
func (c *Cloud) placeBatch(batch []*queuedLaunch) {
	defer func() {
		if p := recover(); p != nil {
			// The batch-mates are answered with an error; the leader's
			// own request unwinds with the panic, as it would alone.
			for _, q := range batch {
				q.res, q.err = nil, fmt.Errorf("launch: internal error: %v", p)
				close(q.done)
			}
			panic(p)
		}
	}()
	start := time.Now()
	var st placeSteps
	ctx := batch[0].ctx
	if len(batch) > 1 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), launchBatchTimeout)
		defer cancel()
	}
	err := c.placeAndInsert(ctx, batch, &st)
	if err != nil && len(batch) > 1 {
		c.log.Warn("launch batch failed: placing its launches one at a time", "launches", len(batch), "err", err)
		for _, q := range batch {
			if err := c.placeAndInsert(q.ctx, []*queuedLaunch{q}, &st); err != nil {
				q.err = err
			}
		}
	} else if err != nil {
		batch[0].err = err
	}
	held := time.Since(start)
	if held >= slowPlacement {
		// Every launch behind it waited as long: say what took it.
		c.log.Warn("slow placement: the launch queue was held", "held", held.Round(time.Millisecond),
			"launches", len(batch), "steps", st.String())
	}
	for _, q := range batch {
		q.l.queued += start.Sub(q.t0)
		q.l.placed += held
		q.l.batch = len(batch)
		close(q.done)
	}
}

// slowPlacement is how long a batch may hold the launch queue before its
// steps are logged.
const slowPlacement = 250 * time.Millisecond

// placeSteps times a placement's steps: each mark ends one, named.
type placeSteps struct {
	last  time.Time
	steps []string
}

// start begins an attempt (a transaction retried starts again).
func (p *placeSteps) start() {
	p.last, p.steps = time.Now(), p.steps[:0]
}

func (p *placeSteps) mark(name string) {
	now := time.Now()
	p.steps = append(p.steps, name+"="+now.Sub(p.last).Round(time.Microsecond).String())
	p.last = now
}

// detail adds a note to the step just marked.
func (p *placeSteps) detail(s string) {
	if n := len(p.steps); n > 0 {
		p.steps[n-1] += s
	}
}

func (p *placeSteps) String() string { return strings.Join(p.steps, " ") }

// launchBatch is what a batch's transaction knows while it places its
// launches in turn.
type launchBatch struct {
	tx  *store.Tx
	b   store.Batch
	seq int64 // the launch sequence read under the placement lock
	// usage is the usage of the batch's launches placed so far, by node:
	// placement adds it to the committed usage (withBatchUsage).
	usage map[string]nodeapi.NodeUsage
	// nodeUsage is the batch's instances per VM type and node: written
	// once at the end, as one statement may not update a row twice.
	nodeUsage map[string]map[string]int
	// tokens are the client tokens the batch's launches took so far
	// (account, NUL, token); unflushed the accounts whose launches have
	// writes in b that a quota read must see.
	tokens, unflushed map[string]bool
	// nodes and groups are the nodes the batch's launches run on and
	// their security groups: they are told once for the batch.
	nodes, groups map[string]bool
	// picked: private addresses were marked taken in c.takenIPs by
	// launches that may not commit.
	picked bool
	// took sums the time of the launches' slow steps, for the log.
	took struct{ quota, place, addresses time.Duration }
}

// flushFor runs the batch's gathered writes before a read of the
// account's quota usage, when a launch of the account before this one
// wrote in the batch.
func (lb *launchBatch) flushFor(ctx context.Context, account string) error {
	if !lb.unflushed[account] {
		return nil
	}
	clear(lb.unflushed)
	if err := lb.b.Run(ctx, lb.tx); err != nil {
		return fmt.Errorf("launch: %w", err)
	}
	return nil
}

// placedLaunch is a launch of the batch that writes, with what the
// commit makes of it.
type placedLaunch struct {
	q       *queuedLaunch
	res     *RunInstancesResponse
	zone    string
	nodes   []string
	perNode map[string]int
}

// errLaunchAfterWrites marks a launch's refusal that came after it wrote
// in the batch's transaction: the batch rolls back (and its launches are
// placed again one at a time).
type errLaunchAfterWrites struct{ err error }

func (e errLaunchAfterWrites) Error() string { return e.err.Error() }
func (e errLaunchAfterWrites) Unwrap() error { return e.err }

// placeAndInsert places the batch's launches and persists their
// reservations in one transaction that holds the placement lock from
// before placement reads the usage until the instances that use it are
// committed. Each launch's answer goes in its res or err; the error
// returned is the batch's own (nothing of it committed).
func (c *Cloud) placeAndInsert(ctx context.Context, batch []*queuedLaunch, st *placeSteps) error {
	var lb *launchBatch
	var placed []*placedLaunch
	var seq int64 // the last launch's sequence number (usagecache.go)
	st.start()
	err := c.db.InTx(ctx, func(tx *store.Tx) error {
		if lb != nil && lb.picked {
			c.takenIPs.failed()
		}
		placed = placed[:0]
		for _, q := range batch {
			q.res, q.err = nil, nil
		}
		st.start()
		if err := tx.LockPlacement(ctx); err != nil {
			return err
		}
		st.mark("lock")
		seqNow, used, quotas, err := launchChecks(ctx, tx, batch)
		if err != nil {
			return err
		}
		st.mark("token")
		lb = &launchBatch{tx: tx, seq: seqNow, usage: map[string]nodeapi.NodeUsage{}, nodeUsage: map[string]map[string]int{},
			tokens: map[string]bool{}, unflushed: map[string]bool{}, nodes: map[string]bool{}, groups: map[string]bool{}}
		for i, q := range batch {
			token := q.k.account() + "\x00" + q.l.token
			if used[i] || (q.l.token != "" && lb.tokens[token]) {
				// A retry that waited for the lock while the original
				// call placed and committed finds its token here (or a
				// batch-mate took it), before placement could tell it the
				// original's instances took the capacity.
				q.err = errTokenUsed
				continue
			}
			p, err := c.prepareLaunch(ctx, lb, q, quotas[i])
			var after errLaunchAfterWrites
			if errors.As(err, &after) || (err != nil && !isRefusal(err)) {
				return err
			}
			if err != nil {
				q.err = err
				continue
			}
			if q.l.token != "" {
				lb.tokens[token] = true
			}
			placed = append(placed, p)
		}
		st.mark("prepare")
		st.detail(fmt.Sprintf("(quota=%s place=%s addresses=%s)", lb.took.quota.Round(time.Microsecond),
			lb.took.place.Round(time.Microsecond), lb.took.addresses.Round(time.Microsecond)))
		if len(placed) == 0 {
			return nil
		}
		for vt, perNode := range lb.nodeUsage {
			if err := addUsages(ctx, &lb.b, vt, perNode); err != nil {
				return err
			}
		}
		launchedOn := slices.Sorted(maps.Keys(lb.nodes))
		if err := c.notifyInTx(ctx, tx, launchedOn...); err != nil {
			return err
		}
		// The new instances join their groups: nodes whose rules name
		// one of them as the peer update their member sets.
		if err := c.notifyGroupsInTx(ctx, tx, slices.Sorted(maps.Keys(lb.groups)), true, launchedOn...); err != nil {
			return err
		}
		if err := lb.b.QueryRow(ctx, tx, launchSeqBump, []any{len(placed)}, &seq); err != nil {
			return fmt.Errorf("launch: %w", err)
		}
		st.mark("write")
		return nil
	})
	st.mark("commit")
	if err != nil {
		if lb != nil && lb.picked {
			c.takenIPs.failed()
		}
		var after errLaunchAfterWrites
		if errors.As(err, &after) {
			err = after.err
		}
		return err
	}
	first := seq - int64(len(placed)) + 1
	for j, p := range placed {
		c.launched(first+int64(j), p.q.l.vt.Name, p.perNode)
		c.takenIPs.launched(first + int64(j))
		p.q.res = c.launchAnswer(p)
	}
	return nil
}

// isRefusal reports whether err is a launch's own answer (an EC2 error,
// a token already used) rather than a failure of its transaction.
func isRefusal(err error) bool {
	var e *ec2.Error
	return errors.Is(err, errTokenUsed) || errors.As(err, &e)
}

// launchChecks reads, in one round trip under the placement lock, the
// launch sequence placement's usage cache is checked against
// (withLaunchSeq) and, for each launch, whether its client token is
// taken and whether its account has quotas at all. A launch without a
// token counts none: no token row is ever empty.
func launchChecks(ctx context.Context, tx *store.Tx, batch []*queuedLaunch) (seq int64, used, quotas []bool, err error) {
	var sb strings.Builder
	sb.WriteString("SELECT seq")
	args := make([]any, 0, 3*len(batch))
	for _, q := range batch {
		sb.WriteString(`, (SELECT COUNT(*) FROM client_tokens WHERE account_id = ? AND token = ?),
			(SELECT COUNT(*) FROM account_quotas WHERE account_id = ?)`)
		args = append(args, q.k.account(), q.l.token, q.k.account())
	}
	sb.WriteString(" FROM launch_seq")
	counts := make([]int, 2*len(batch))
	dest := make([]any, 0, 1+len(counts))
	dest = append(dest, &seq)
	for i := range counts {
		dest = append(dest, &counts[i])
	}
	if err := tx.QueryRow(ctx, sb.String(), args...).Scan(dest...); err != nil {
		return 0, nil, nil, fmt.Errorf("client tokens and launch sequence: %w", err)
	}
	used, quotas = make([]bool, len(batch)), make([]bool, len(batch))
	for i := range batch {
		used[i], quotas[i] = counts[2*i] > 0, counts[2*i+1] > 0
	}
	return seq, used, quotas, nil
}

// batchUsageKey marks a placement's context with the usage of the
// launches its batch placed before it (withBatchUsage).
type batchUsageKey struct{}

// withBatchUsage has placement count the usage of the batch's earlier
// launches, not committed yet, on top of the committed usage.
func withBatchUsage(ctx context.Context, u map[string]nodeapi.NodeUsage) context.Context {
	return context.WithValue(ctx, batchUsageKey{}, u)
}

func batchUsageOf(ctx context.Context) map[string]nodeapi.NodeUsage {
	u, _ := ctx.Value(batchUsageKey{}).(map[string]nodeapi.NodeUsage)
	return u
}
