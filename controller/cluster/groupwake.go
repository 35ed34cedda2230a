package cluster

import (
	"context"
	"errors"
	"slices"
	"time"

	"ironbark/internal/store"
)

// A change of security groups reaches every node that enforces them: a
// launch or a termination changes the member lists of the groups whose
// rules name its groups as the peer, a rule change the group's rules. The
// change is published in its transaction by the groups' IDs (a payload or
// two, however many nodes hold members of them), and every controller,
// the one that made it included, finds the nodes from its own copy of the
// memberships (GroupLedger) and wakes those waiting on it. So a controller
// killed right after its commit loses none of these wake-ups, and a
// launch costs the bus one short payload instead of a list of a thousand
// nodes.

// GroupLedger is the part of the ledger that names the nodes a change of
// security groups reaches (controller.Cloud is one).
type GroupLedger interface {
	// NodesOfGroups returns the nodes running a member of one of the
	// groups and, when members (the groups' member lists changed), of a
	// group whose rules name one of them as the peer, from reads that
	// started at or after fresh.
	NodesOfGroups(ctx context.Context, groups []string, members bool, fresh time.Time) ([]string, error)
}

// errNoGroupLedger: NotifyGroupsInTx needs a ledger that names the nodes
// of groups.
var errNoGroupLedger = errors.New("cluster: the ledger does not name the nodes of security groups (GroupLedger)")

// NotifyGroupsInTx wakes, when tx commits and on every controller, the
// nodes that enforce the groups. members: the groups' member lists
// changed (a launch, a termination); the nodes are woken within
// soonDelay, together with those of every other change meanwhile, and
// rebuild only their member lists (answers.go). Else the groups' rules
// changed and the nodes are woken at once, for a whole answer.
func (s *Service) NotifyGroupsInTx(ctx context.Context, tx *store.Tx, groups []string, members bool) error {
	if len(groups) == 0 {
		return nil
	}
	if _, ok := s.cfg.Ledger.(GroupLedger); !ok {
		return errNoGroupLedger
	}
	groups = slices.Clone(groups)
	if err := s.wake.publishGroupsInTx(ctx, tx, groups, members); err != nil {
		return err
	}
	tx.AfterCommit(func() { s.groupsChanged(groups, members, true) })
	return nil
}

// groupsChanged wakes the nodes of groups changed here (after the commit;
// here) or by another controller (heard on the bus).
func (s *Service) groupsChanged(groups []string, members, here bool) {
	if members {
		s.mu.Lock()
		for _, g := range groups {
			s.soonGroups[g] = true
		}
		s.mu.Unlock()
		s.armSoon()
		return
	}
	wake := func() {
		for _, n := range s.nodesOfGroups(groups, false) {
			s.wakeNode(n)
		}
	}
	if here {
		wake() // the caller's request returns once its nodes are woken
	} else {
		go wake() // the bus's listener goes on at once
	}
}

// nodesOfGroups asks the ledger for the nodes of groups from reads that
// start now, after every change gathered so far committed; a failure is
// logged, and those nodes see the change at their next poll.
func (s *Service) nodesOfGroups(groups []string, members bool) []string {
	gl, ok := s.cfg.Ledger.(GroupLedger)
	if !ok || len(groups) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nodes, err := gl.NodesOfGroups(ctx, groups, members, time.Now())
	if err != nil {
		s.log.Warn("nodes of security groups", "groups", len(groups), "err", err)
		return nil
	}
	return nodes
}
