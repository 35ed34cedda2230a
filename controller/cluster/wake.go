package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"ironbark/internal/store"
)

// Node agents long-poll one controller for their desired instances while
// RunInstances and TerminateInstances may reach another one. A controller
// that changed a node's desired instances publishes the node's ID on the
// database's wake channel (PostgreSQL NOTIFY, in the change's transaction:
// NotifyInTx), or the IDs of the security groups it changed
// (NotifyGroupsInTx, groupwake.go); every controller listens, and wakes the
// node's waiting request if it holds one, which rereads the ledger. On
// SQLite there is one controller and the local wake-up is all there is.

// wakeChannel is the PostgreSQL channel the wake-ups travel on.
const wakeChannel = "ironbark_node_wake"

// wakeAllNodes in a payload wakes every waiting request: the publisher
// lost count of which nodes changed.
const wakeAllNodes = "*"

// wakeBus publishes this controller's wake-ups, batched (a RunInstances of
// 1,000 instances over 1,000 nodes is a handful of NOTIFYs, not 1,000),
// and delivers the other controllers' to wakeNode.
type wakeBus struct {
	db          *store.DB
	log         *slog.Logger
	origin      string // this controller, so it ignores its own wake-ups
	wakeNode    func(nodeID string)
	wakeMembers func(nodeID string) // a wake-up for member lists only
	wakeAll     func()
	// groupsChanged is told the security groups another controller
	// changed (groupwake.go): members, or else rules.
	groupsChanged func(groups []string, members bool)

	once     sync.Once
	mu       sync.Mutex
	pending  map[string]bool // node -> for member lists only
	overflow bool            // too many pending: publish wakeAllNodes
	kick     chan struct{}   // pending is not empty
}

// membersOnly marks a payload's wake-ups as for member lists only: it
// follows the origin ("ORIGIN~m:id,..."), so a controller that does not
// know the mark reads another origin and wakes the nodes as for any
// change.
const membersOnly = "~m"

// groupMembers and groupRules mark a payload as naming security groups,
// not nodes: their member lists changed, or their rules
// (NotifyGroupsInTx).
const (
	groupMembers = "~g"
	groupRules   = "~r"
)

// maxPendingWakes bounds the node IDs waiting to be published; past it one
// wake-all replaces them.
const maxPendingWakes = 50000

func newWakeBus(db *store.DB, log *slog.Logger, wakeNode, wakeMembers func(string), wakeAll func()) *wakeBus {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return &wakeBus{db: db, log: log, origin: hex.EncodeToString(b[:]), wakeNode: wakeNode, wakeMembers: wakeMembers, wakeAll: wakeAll,
		pending: map[string]bool{}, kick: make(chan struct{}, 1)}
}

// start runs the publisher and the listener until ctx ends (once; a
// store that cannot notify other processes needs neither).
func (w *wakeBus) start(ctx context.Context) {
	if !w.db.CanNotify() {
		return
	}
	w.once.Do(func() {
		go w.publishLoop(ctx)
		go func() {
			_ = w.db.Listen(ctx, wakeChannel, store.ListenHandlers{
				Message: w.heard,
				// Whatever was published while the connection was down
				// is lost: every waiting request rereads.
				Connected: w.wakeAll,
				Lost: func(err error) {
					w.log.Warn("wake-ups from other controllers: connection lost, reconnecting", "err", err)
				},
			})
		}()
	})
}

// publish queues a node's wake-up for the other controllers; members:
// for a change of member lists only (NotifySoon's).
func (w *wakeBus) publish(nodeID string, members bool) {
	if !w.db.CanNotify() {
		return
	}
	w.mu.Lock()
	if len(w.pending) >= maxPendingWakes {
		w.overflow = true
	} else if only, ok := w.pending[nodeID]; !ok || only {
		w.pending[nodeID] = members
	}
	w.mu.Unlock()
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// publishInTx publishes nodes' wake-ups with tx: the other controllers
// hear them when tx commits, however this process ends after.
func (w *wakeBus) publishInTx(ctx context.Context, tx *store.Tx, nodeIDs []string) error {
	if !w.db.CanNotify() {
		return nil
	}
	for _, p := range w.payloads(w.origin, nodeIDs) {
		if err := tx.Publish(ctx, wakeChannel, p); err != nil {
			return fmt.Errorf("wake-ups: %w", err)
		}
	}
	return nil
}

// publishGroupsInTx publishes a change of security groups with tx
// (NotifyGroupsInTx).
func (w *wakeBus) publishGroupsInTx(ctx context.Context, tx *store.Tx, groups []string, members bool) error {
	if !w.db.CanNotify() {
		return nil
	}
	kind := groupRules
	if members {
		kind = groupMembers
	}
	for _, p := range w.payloads(w.origin+kind, groups) {
		if err := tx.Publish(ctx, wakeChannel, p); err != nil {
			return fmt.Errorf("wake-ups for security groups: %w", err)
		}
	}
	return nil
}

func (w *wakeBus) publishLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.kick:
		}
		w.mu.Lock()
		var ids, memberIDs []string
		for id, only := range w.pending {
			if only {
				memberIDs = append(memberIDs, id)
			} else {
				ids = append(ids, id)
			}
		}
		all := w.overflow
		w.pending, w.overflow = map[string]bool{}, false
		w.mu.Unlock()
		if all {
			ids, memberIDs = []string{wakeAllNodes}, nil
		}
		for _, p := range append(w.payloads(w.origin, ids), w.payloads(w.origin+membersOnly, memberIDs)...) {
			pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err := w.db.Publish(pctx, wakeChannel, p)
			cancel()
			if err != nil && ctx.Err() == nil {
				// The other controllers' nodes then see the change at
				// their next poll (DesiredPoll, or their wait's end).
				w.log.Warn("wake-ups to other controllers", "err", err)
			}
		}
	}
}

// payloads packs node IDs into as few payloads as fit: "ORIGIN:id,id,...".
func (w *wakeBus) payloads(origin string, ids []string) []string {
	var out []string
	var b strings.Builder
	for _, id := range ids {
		if b.Len() > 0 && b.Len()+1+len(id) > store.MaxPayload {
			out = append(out, b.String())
			b.Reset()
		}
		if b.Len() == 0 {
			b.WriteString(origin)
			b.WriteByte(':')
		} else {
			b.WriteByte(',')
		}
		b.WriteString(id)
	}
	if b.Len() > 0 {
		out = append(out, b.String())
	}
	return out
}

// heard delivers another controller's wake-ups.
func (w *wakeBus) heard(payload string) {
	origin, ids, ok := strings.Cut(payload, ":")
	origin, kind, _ := strings.Cut(origin, "~")
	if !ok || origin == w.origin {
		return
	}
	switch "~" + kind {
	case groupMembers, groupRules:
		if w.groupsChanged != nil {
			groups := strings.Split(ids, ",")
			w.groupsChanged(slices.DeleteFunc(groups, func(g string) bool { return g == "" }), "~"+kind == groupMembers)
		}
		return
	}
	wake := w.wakeNode
	if "~"+kind == membersOnly {
		wake = w.wakeMembers
	}
	for _, id := range strings.Split(ids, ",") {
		if id == wakeAllNodes {
			w.wakeAll()
			return
		}
		if id != "" {
			wake(id)
		}
	}
}
