package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"ironbark/controller"
	"ironbark/controller/sched"
	"ironbark/internal/datadir"
	"ironbark/internal/httplimit"
	"ironbark/internal/nodeapi"
	"ironbark/internal/pki"
	"ironbark/internal/store"
)

// InstanceLedger is what the cluster side needs from the EC2 side's
// instance records (controller.Cloud).
type InstanceLedger interface {
	// DesiredOnNode returns the specs of every instance placed on the node
	// that the node should hold (not yet terminated there).
	DesiredOnNode(ctx context.Context, nodeID string) ([]nodeapi.InstanceSpec, error)
	// Observe records what a node reports. An instance the node does not
	// report but the ledger expects there is handled by the caller's policy.
	Observe(ctx context.Context, nodeID string, st []nodeapi.InstanceStatus) error
	// Usage sums the resources of non-terminated instances per node.
	Usage(ctx context.Context) (controller.NodeUsages, error)
}

// NodeSilences records when a node goes silent (down, at its last
// heartbeat) and when it is heard again, in the transaction that marks
// it (controller.Cloud: the usage record reports instance time inside
// a silence apart).
type NodeSilences interface {
	NodeSilence(ctx context.Context, tx *store.Tx, nodeID string, down bool, at time.Time) error
}

// Config are the Service's collaborators and settings.
type Config struct {
	DB      *store.DB
	DataDir string // the CA lives in DataDir/pki
	Ledger  InstanceLedger
	// Silences, when set, is told of nodes going silent and coming back.
	Silences NodeSilences
	Logger   *slog.Logger
	// VMTypes lists the VM types Zones counts; nil means
	// controller.DefaultVMTypes.
	VMTypes func(ctx context.Context) ([]nodeapi.VMType, error)
	// Blobs, when set, serves image blobs to enrolled nodes under
	// /v1/blobs/ (it sees the whole path): images/blobstore's
	// Store.HandlerAt(nodeapi.PathBlobs) fits (GET /v1/blobs/sha256/<hex>,
	// Range).
	Blobs http.Handler
	// ServerNames are extra host names / IPs for the listener certificate.
	ServerNames []string
	// HeartbeatInterval is what nodes are told (default 10 s); a node is
	// down after HeartbeatTimeout without one (default 3 intervals).
	HeartbeatInterval time.Duration
	HeartbeatTimeout  time.Duration
	// DesiredPoll is how often a waiting instances request re-reads the
	// ledger when no notification came (default 30 s, longer than the
	// agents' waits: every change of desired state is notified, by this
	// controller's Notify or, on PostgreSQL, by another controller's).
	DesiredPoll time.Duration
	// ReadWhole has every answer to a node read whole from the ledger,
	// never rebuilt from the node's last one (answers.go): for several
	// controllers on a store that does not tell them of each other's
	// changes (SQLite), which only tests run. Zero: rebuilt when only
	// member lists changed.
	ReadWhole bool
	// Jobs says whether this controller runs the periodic jobs (dead-node
	// checks, token purge) now: with several controllers on one database,
	// one at a time does (store.Leader). nil: this one always does.
	Jobs controller.Leadership
	Now  func() time.Time
	// Limits bound each node API client (timeouts, connections per
	// address); zero fields take httplimit's defaults, and responses have
	// no write timeout (blobs of gigabytes stream through it).
	Limits httplimit.Limits
}

// Service is the cluster controller: registry, node API and placement.
type Service struct {
	*Registry
	cfg  Config
	ca   *pki.CA
	log  *slog.Logger
	cert tls.Certificate

	mu       sync.Mutex
	policies map[string]sched.Policy // per cluster, so ROUNDROBIN keeps its place
	waiters  map[string]*waiter
	snap     nodeSnapshot
	snapGen  uint64 // counts invalidations: a read from before one is not kept
	// snapReading: a background read of the node table is under way.
	snapReading bool
	candBase    *candidateBase  // place.go
	soon        map[string]bool // nodes NotifySoon will wake at its next flush
	soonGroups  map[string]bool // groups whose members' nodes it will wake (groupwake.go)
	soonArm     bool            // a flush is scheduled
	// rebuilds are the turns of answers rebuilt after a wake-up for
	// member lists only (rebuildTurn); turnWaits counts requests waiting
	// for one (tests).
	rebuilds  chan struct{}
	turnWaits int
	parked    int // requests waiting for a change (api.go)

	wake *wakeBus // wake-ups to and from other controllers (wake.go)
	// members are the member lists recently sent, the bases of deltas
	// (members.go).
	members *memberHistory
	// answers are the nodes' last answers but their member lists
	// (answers.go).
	answers *answerCache
}

// nodeSnapshot caches the node table for placement: a burst of
// RunInstances reads it once, not once per call. It is at most
// snapshotTTL old (several controllers may share a PostgreSQL store).
type nodeSnapshot struct {
	nodes []Node
	// groups are the nodes' indices per cluster, each in ID order: built
	// once per read, so a placement need not sort 10,000 nodes into
	// clusters by name (a map operation each).
	groups []nodeGroup
	at     time.Time
	id     uint64 // names the read (snapshotReads)
}

// snapshotReads numbers the node table's reads (nodeSnapshot.id).
var snapshotReads atomic.Uint64

type nodeGroup struct {
	cluster string
	nodes   []int
}

// snapshotOf builds the snapshot of nodes (in ID order) read at.
func snapshotOf(nodes []Node, at time.Time) nodeSnapshot {
	snap := nodeSnapshot{nodes: nodes, at: at, id: snapshotReads.Add(1)}
	index := map[string]int{}
	for i := range nodes {
		g, ok := index[nodes[i].Cluster]
		if !ok {
			g = len(snap.groups)
			index[nodes[i].Cluster] = g
			snap.groups = append(snap.groups, nodeGroup{cluster: nodes[i].Cluster})
		}
		snap.groups[g].nodes = append(snap.groups[g].nodes, i)
	}
	return snap
}

const snapshotTTL = time.Second

// snapshotMaxAge bounds how old a snapshot may be answered while its
// background refresh runs (or failed).
const snapshotMaxAge = 5 * time.Second

// New opens the cluster side: migrates its tables, loads (or creates) the
// CA and the listener certificate.
func New(ctx context.Context, cfg Config) (*Service, error) {
	if cfg.DB == nil || cfg.Ledger == nil || cfg.DataDir == "" {
		return nil, errors.New("cluster: DB, Ledger and DataDir are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.HeartbeatInterval <= 0 {
		cfg.HeartbeatInterval = 10 * time.Second
	}
	if cfg.HeartbeatTimeout <= 0 {
		cfg.HeartbeatTimeout = max(3*cfg.HeartbeatInterval, DefaultHeartbeatTimeout)
	}
	if cfg.DesiredPoll <= 0 {
		cfg.DesiredPoll = 30 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.VMTypes == nil {
		cfg.VMTypes = func(context.Context) ([]nodeapi.VMType, error) { return controller.DefaultVMTypes(), nil }
	}
	reg, err := NewRegistry(ctx, cfg.DB)
	if err != nil {
		return nil, err
	}
	ca, err := pki.LoadOrCreateCA(datadir.Dir(cfg.DataDir).PKI())
	if err != nil {
		return nil, err
	}
	cert, err := ca.ServerCertificate(cfg.ServerNames)
	if err != nil {
		return nil, err
	}
	s := &Service{
		Registry: reg, cfg: cfg, ca: ca, log: cfg.Logger, cert: ca.ServerChain(cert),
		policies: map[string]sched.Policy{}, waiters: map[string]*waiter{}, soon: map[string]bool{}, soonGroups: map[string]bool{},
		members: newMemberHistory(nil), answers: newAnswerCache(cfg.DesiredPoll),
		rebuilds: make(chan struct{}, max(1, runtime.GOMAXPROCS(0)/2)),
	}
	s.wake = newWakeBus(cfg.DB, s.log, s.wakeNode, s.wakeMembers, s.wakeAll)
	s.wake.groupsChanged = func(groups []string, members bool) { s.groupsChanged(groups, members, false) }
	return s, nil
}

// CA is the cloud's certificate authority.
func (s *Service) CA() *pki.CA { return s.ca }

// TLSConfig is the node listener's TLS configuration. It offers HTTP/2,
// which agents take: a node's long poll, heartbeats and image downloads
// share one connection, so a controller holds one per node, not two.
func (s *Service) TLSConfig() *tls.Config {
	c := s.ca.ServerTLS(s.cert)
	c.NextProtos = []string{"h2", "http/1.1"}
	return c
}

// APITLSConfig is the EC2 API listener's TLS configuration: the same
// certificate as the node API's (issued by the cloud's CA for the
// controller's names), no client certificates, TLS 1.2 and up for the
// older clients (boto 2, euca2ools).
func (s *Service) APITLSConfig() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{s.cert}}
}

// Placer is the Service as the EC2 side's placer.
func (s *Service) Placer() controller.Placer { return s }

// Serve answers the node API on ln (plain TCP; TLS is added here) until ctx
// ends.
func (s *Service) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:     s.Handler(),
		TLSConfig:   s.TLSConfig(),
		ErrorLog:    slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		BaseContext: func(net.Listener) context.Context { return ctx },
	}
	lim := s.cfg.Limits
	if lim.WriteTimeout == 0 {
		lim.WriteTimeout = -1
	}
	lim.Apply(srv)
	ln = lim.Listener(ln, s.log.With("listener", "node-api"))
	done := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_ = srv.Shutdown(sctx)
			cancel()
			srv.Close()
		case <-done:
		}
	}()
	err := srv.Serve(tls.NewListener(ln, srv.TLSConfig))
	close(done)
	if errors.Is(err, http.ErrServerClosed) || ctx.Err() != nil {
		return nil
	}
	return fmt.Errorf("node api: %w", err)
}

// Run marks nodes down when their heartbeats stop and purges expired
// enrollment tokens (when this controller leads the periodic jobs), and
// carries wake-ups to and from the other controllers on the database,
// until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	s.wake.start(ctx)
	t := time.NewTicker(s.cfg.HeartbeatInterval / 2)
	defer t.Stop()
	started := s.cfg.Now()
	leading := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if s.cfg.Jobs != nil {
			held, err := s.cfg.Jobs.Held(ctx)
			if err != nil && ctx.Err() == nil {
				s.log.Warn("background jobs: leader election", "err", err)
			}
			if held != leading {
				leading = held
				if held {
					s.log.Info("this controller runs the background jobs now (dead-node checks, purges)")
				}
			}
			if !held {
				continue
			}
		}
		if k, err := s.PurgeTokens(ctx, s.cfg.Now()); err != nil && ctx.Err() == nil {
			s.log.Warn("purge enrollment tokens", "err", err)
		} else if k > 0 {
			s.log.Info("expired enrollment tokens purged", "count", k)
		}
		now := s.cfg.Now()
		if now.Sub(started) < s.cfg.HeartbeatTimeout {
			// Nodes kept running while no controller listened: each gets
			// a timeout's worth of this controller's time to be heard
			// before it counts as silent.
			continue
		}
		ids, err := s.markDown(ctx, now.Add(-s.cfg.HeartbeatTimeout), s.cfg.Silences)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			s.log.Warn("heartbeat check", "err", err)
			continue
		}
		if len(ids) > 0 {
			s.invalidate()
		}
		for _, id := range ids {
			s.log.Warn("node missed its heartbeats: down", "node", id)
		}
	}
}

// Notify wakes the node's waiting instances request so it sees a change
// of its desired instances at once, on this controller and (PostgreSQL)
// every other one on the database. The EC2 side calls it after it
// commits a launch, stop or termination; without it nodes notice within
// DesiredPoll.
func (s *Service) Notify(nodeID string) {
	s.wakeNode(nodeID)
	s.wake.publish(nodeID, false)
}

// NotifyInTx is Notify for a change made in tx, told inside it: the
// nodes' waiting requests wake when tx commits, on this controller and
// (PostgreSQL delivers the transaction's NOTIFY at its commit) on every
// other, and not at all if it rolls back. A controller killed between a
// launch's commit and a wake-up published after it left the other
// controllers' nodes waiting out their poll for it.
func (s *Service) NotifyInTx(ctx context.Context, tx *store.Tx, nodeIDs ...string) error {
	if err := s.wake.publishInTx(ctx, tx, nodeIDs); err != nil {
		return err
	}
	tx.AfterCommit(func() {
		for _, id := range nodeIDs {
			s.wakeNode(id)
		}
	})
	return nil
}

// wakeNode wakes the node's waiting request after a change that may be
// more than member lists: its answer is read anew.
func (s *Service) wakeNode(nodeID string) {
	s.answers.invalidate(nodeID)
	s.wakeLocal(nodeID, false)
}

// wakeMembers wakes the node's waiting request after a change of member
// lists only.
func (s *Service) wakeMembers(nodeID string) {
	s.wakeLocal(nodeID, true)
}

// NotifySoon wakes the node's waiting request like Notify, within
// soonDelay, together with every other node told the same meanwhile: for
// changes that may wait a moment and come in bursts, the member lists of
// security groups a launch grows (where NotifyGroupsInTx does not tell
// them, which gathers the same way), and for those only: the node's answer
// is rebuilt from its last one with the member lists read anew
// (answers.go), so a change of anything else must be told with Notify. During a launch burst a node that holds
// members of many accounts' groups is then woken a few times a second,
// not at every launch, and the nodes woken together share their reads of
// the groups' members (the ledger's answers may reuse any read that
// started after the wake-up).
func (s *Service) NotifySoon(nodeID string) {
	s.mu.Lock()
	s.soon[nodeID] = true
	s.mu.Unlock()
	s.armSoon()
}

// soonDelay is how long NotifySoon gathers nodes before it wakes them.
const soonDelay = 250 * time.Millisecond

// armSoon schedules a flush of what NotifySoon and NotifyGroupsInTx
// gathered, unless one is scheduled.
func (s *Service) armSoon() {
	s.mu.Lock()
	arm := !s.soonArm
	s.soonArm = true
	s.mu.Unlock()
	if arm {
		time.AfterFunc(soonDelay, s.flushSoon)
	}
}

func (s *Service) flushSoon() {
	s.mu.Lock()
	ids, groups := s.soon, s.soonGroups
	s.soon, s.soonGroups, s.soonArm = map[string]bool{}, map[string]bool{}, false
	s.mu.Unlock()
	for id := range ids {
		s.wakeMembers(id)
		s.wake.publish(id, true)
	}
	// Groups were published in their transactions: every controller
	// wakes its own nodes of them.
	for _, n := range s.nodesOfGroups(slices.Sorted(maps.Keys(groups)), true) {
		if !ids[n] {
			s.wakeMembers(n)
		}
	}
}

// waiter is what a node's waiting instances requests wait on: ch closes
// when the node's desired state may have changed, and woke says when (a
// read of the ledger that started at or after it sees the change).
type waiter struct {
	ch chan struct{}
	// Set before ch closes; read after.
	woke    time.Time
	members bool // woken for a change of member lists only
	// answered is the ETag of the last answer whose read began after the
	// waiter was taken (guarded by Service.mu): while the waiter is
	// open, it is the node's current state.
	answered string
}

// answered records that an answer of ETag etag was read after wt was
// taken.
func (s *Service) answered(wt *waiter, etag string) {
	s.mu.Lock()
	wt.answered = etag
	s.mu.Unlock()
}

// answeredWith reports whether wt, the node's open waiter, was answered
// with etag: no wake-up came since that answer's read began.
func (s *Service) answeredWith(wt *waiter, etag string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return wt.answered != "" && wt.answered == etag
}

// wakeLocal wakes the node's request waiting on this controller, if any;
// members: for a change of member lists only.
func (s *Service) wakeLocal(nodeID string, members bool) {
	s.mu.Lock()
	if w, ok := s.waiters[nodeID]; ok {
		w.woke, w.members = time.Now(), members
		close(w.ch)
		delete(s.waiters, nodeID)
	}
	s.mu.Unlock()
}

// wakeAll wakes every waiting request on this controller: after
// notifications may have been missed, each rereads its node's instances.
func (s *Service) wakeAll() {
	s.answers.invalidateAll()
	s.mu.Lock()
	now := time.Now()
	for id, w := range s.waiters {
		w.woke = now
		close(w.ch)
		delete(s.waiters, id)
	}
	s.mu.Unlock()
}

// rebuildTurn waits for a turn to rebuild the node's answer after a
// wake-up for member lists only. A launch burst wakes every node holding a
// member of the launching accounts' groups a few times a second; rebuilt
// all at once, those answers took every core, and the one woken request
// that carried a launch to its node waited behind a thousand of them. With
// turns, at most half the cores rebuild member lists, and a request woken
// for more (Notify: a launch onto its node) goes at once: a wake-up while
// it waits for its turn ends the wait without one. Member-only wake-ups
// meanwhile are read with the one it waits for: a node woken many times
// waits for one turn. It returns the fresh time of the last wake-up and
// the turn's release (nil when ctx ended first).
func (s *Service) rebuildTurn(ctx context.Context, nodeID string, fresh time.Time) (time.Time, func()) {
	s.mu.Lock()
	s.turnWaits++
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.turnWaits--
		s.mu.Unlock()
	}()
	for {
		wt := s.waiterFor(nodeID)
		select {
		case s.rebuilds <- struct{}{}:
			return fresh, func() { <-s.rebuilds }
		case <-wt.ch:
			fresh = wt.woke
			if !wt.members {
				return fresh, func() {}
			}
		case <-ctx.Done():
			return fresh, nil
		}
	}
}

// waitingTurns is how many requests wait in rebuildTurn.
func (s *Service) waitingTurns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.turnWaits
}

func (s *Service) waiterFor(nodeID string) *waiter {
	s.mu.Lock()
	defer s.mu.Unlock()
	w, ok := s.waiters[nodeID]
	if !ok {
		w = &waiter{ch: make(chan struct{})}
		s.waiters[nodeID] = w
	}
	return w
}

func (s *Service) policy(c Cluster) (sched.Policy, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.policies[c.Name]
	if ok && p.Name() == c.Policy {
		return p, nil
	}
	p, err := sched.New(c.Policy)
	if err != nil {
		return nil, fmt.Errorf("cluster %s: %w", c.Name, err)
	}
	s.policies[c.Name] = p
	return p, nil
}
