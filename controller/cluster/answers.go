package cluster

import (
	"context"
	"sync"
	"time"

	"ironbark/internal/nodeapi"
)

// A launch into a security group wakes every node that holds a member of a
// group whose rules name it: its member list grew, and nothing else of
// those nodes' desired state changed. Rebuilding each woken node's whole
// answer (its instances, their groups and rules, from the store) made a
// launch cost a store read per node its account spans. So a controller
// keeps each node's last answer but the member lists (answerCache), and a
// wake-up that changed only member lists (NotifyGroupsInTx's for a
// launch or termination, or NotifySoon's, here or on another controller)
// rebuilds only those, from the ledger's member lists (PeerMemberLedger).
// Every other wake-up (Notify: a launch, stop or termination on the node,
// a rule change), a lost connection to the other controllers, a poll
// without an etag and DesiredPoll's periodic reread drop the node's entry
// and read everything again. An entry is at most
// DesiredPoll old.

// PeerMemberLedger is the part of the ledger that gives security groups'
// member lists by themselves (controller.Cloud is one). With it the node
// API rebuilds only the member lists after a wake-up that changed nothing
// else.
type PeerMemberLedger interface {
	// PeerMembers returns, for each group in order, its ID, its member
	// list (the private addresses of its live instances, in address
	// order) and the list's nodeapi.MembersVersion, from reads that
	// started at or after fresh. The lists are shared: callers must not
	// modify them.
	PeerMembers(ctx context.Context, groups []string, fresh time.Time) ([]nodeapi.SecurityGroup, error)
	// NodeMark names the changes of the node's own instances (a launch
	// onto it, a termination) seen by reads that started at or after
	// fresh. A kept answer is rebuilt only while it is unchanged: another
	// controller's wake-up for the node may arrive after its member-only
	// one, or after the node's next poll.
	NodeMark(ctx context.Context, node string, fresh time.Time) (int64, error)
}

// answerCache holds each node's last desired state without its member
// lists.
type answerCache struct {
	mu      sync.Mutex
	gens    map[string]uint64 // per node, bumped by every wake-up that may change more than member lists
	all     uint64            // bumped when every node's may have
	entries map[string]cachedAnswer
	ttl     time.Duration
	hits    int // answers rebuilt from an entry (tests)
}

type cachedAnswer struct {
	gen, all uint64
	mark     int64 // the ledger's NodeMark before the answer was read
	at       time.Time
	specs    []nodeapi.InstanceSpec  // versions set; shared, never modified
	groups   []nodeapi.SecurityGroup // the peers' Members nil; shared
	peers    []string                // the groups whose member lists the node is sent
}

func newAnswerCache(ttl time.Duration) *answerCache {
	return &answerCache{gens: map[string]uint64{}, entries: map[string]cachedAnswer{}, ttl: ttl}
}

// version is what put must be given for an answer read from now on.
func (c *answerCache) version(node string) (gen, all uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gens[node], c.all
}

// invalidate drops the node's entry, and any answer being read for it
// before now.
func (c *answerCache) invalidate(node string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gens[node]++
	delete(c.entries, node)
}

// invalidateAll drops every entry.
func (c *answerCache) invalidateAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.all++
	clear(c.entries)
}

// put keeps a node's answer read after version said gen and all, unless a
// wake-up since made it old.
func (c *answerCache) put(node string, gen, all uint64, a cachedAnswer) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gens[node] != gen || c.all != all {
		return
	}
	a.gen, a.all = gen, all
	c.entries[node] = a
}

// get is the node's entry, if it is current and younger than the TTL.
func (c *answerCache) get(node string, now time.Time) (cachedAnswer, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	a, ok := c.entries[node]
	if !ok || a.gen != c.gens[node] || a.all != c.all || now.Sub(a.at) >= c.ttl {
		return cachedAnswer{}, false
	}
	c.hits++
	return a, true
}

// hitCount is how many answers were rebuilt from an entry.
func (c *answerCache) hitCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.hits
}
