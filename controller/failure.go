package controller

import (
	"context"
	"fmt"
	"strings"
	"time"

	"ironbark/controller/usage"
	"ironbark/internal/nodeapi"
	"ironbark/internal/store"
)

// Failure policy: what happens to instances whose node fails or leaves.
//
//   - A node that stops its heartbeats is down: its instances keep their
//     state (the node may come back and re-adopt them) but
//     DescribeInstanceStatus shows them impaired.
//   - Terminating an instance on a node that is down completes without the
//     node once the node has been silent for LostAfter (default 5 min), or
//     at once when the node was removed: the instance ends terminated with
//     reason Server.InternalError, and gives back its address and usage. A
//     node that returns later destroys the domain, which it is no longer
//     asked to keep.
//   - `ironbark node remove` refuses while the node holds live instances;
//     with --force it terminates them the same way first.
//
// State reasons carry EC2's codes: Client.UserInitiatedShutdown for the
// user's own stop or terminate, Client.InstanceInitiatedShutdown when the
// guest powered off, Server.InternalError when the cloud failed it.

// NodeHealth is what the EC2 side needs of the cluster side to apply the
// policy: the nodes that exist and whether each is up.
type NodeHealth interface {
	// NodeStatus returns every enrolled node's liveness by ID; a node not
	// in the map has been removed.
	NodeStatus(ctx context.Context) (map[string]NodeStatus, error)
}

// NodeStatus is one node's liveness.
type NodeStatus struct {
	Up            bool
	LastHeartbeat time.Time
}

// DefaultLostAfter is how long a node must be silent before terminations
// on it complete without it.
const DefaultLostAfter = 5 * time.Minute

// State reason codes (EC2's).
const (
	ReasonUserInitiated     = "Client.UserInitiatedShutdown"
	ReasonInstanceInitiated = "Client.InstanceInitiatedShutdown"
	ReasonInternalError     = "Server.InternalError"
	ReasonNoCapacity        = "Server.InsufficientInstanceCapacity"
)

// SetNodeHealth tells the Cloud how to learn which nodes are up (the
// cluster side); without it no node is ever thought down.
func (c *Cloud) SetNodeHealth(h NodeHealth) { c.health = h }

// stateReasonOf makes EC2's stateReason from a stored reason: one that
// starts with a code ("Server.InternalError: ...") keeps it; the user's
// own stop or terminate ("User initiated (...)") is
// Client.UserInitiatedShutdown; anything else a node reported (a launch
// that failed there) is Server.InternalError.
func stateReasonOf(reason string) *StateReason {
	if reason == "" {
		return nil
	}
	if strings.HasPrefix(reason, "Client.") || strings.HasPrefix(reason, "Server.") {
		code, _, _ := strings.Cut(reason, ":")
		return &StateReason{Code: strings.TrimSpace(code), Message: reason}
	}
	if strings.HasPrefix(reason, "User initiated") {
		return &StateReason{Code: ReasonUserInitiated, Message: ReasonUserInitiated + ": User initiated shutdown"}
	}
	return &StateReason{Code: ReasonInternalError, Message: ReasonInternalError + ": " + reason}
}

// nodeStatus is every node's liveness, or nil when the Cloud has no
// NodeHealth.
func (c *Cloud) nodeStatus(ctx context.Context) (map[string]NodeStatus, error) {
	if c.health == nil {
		return nil, nil
	}
	st, err := c.health.NodeStatus(ctx)
	if err != nil {
		return nil, fmt.Errorf("node status: %w", err)
	}
	return st, nil
}

// impaired reports whether an instance that should be on its node has a
// node that is down or gone.
func impaired(in Instance, st map[string]NodeStatus) bool {
	if st == nil || in.State.Name == nodeapi.StateTerminated || in.State.Name == nodeapi.StateStopped {
		return false
	}
	s, ok := st[in.nodeID]
	return !ok || !s.Up
}

// FinishLostTerminations completes terminations that wait on nodes that
// are gone (removed, or silent for LostAfter), and returns how many.
func (c *Cloud) FinishLostTerminations(ctx context.Context) (int, error) {
	st, err := c.nodeStatus(ctx)
	if err != nil || st == nil {
		return 0, err
	}
	now := c.now()
	type row struct{ id, node string }
	var lost []row
	rows, err := c.db.Query(ctx, `SELECT id, node_id FROM instances WHERE desired = ? AND state <> ?`,
		nodeapi.StateTerminated, nodeapi.StateTerminated)
	if err != nil {
		return 0, fmt.Errorf("lost terminations: %w", err)
	}
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.id, &r.node); err != nil {
			rows.Close()
			return 0, err
		}
		s, ok := st[r.node]
		if !ok || (!s.Up && now.Sub(s.LastHeartbeat) >= c.cfg.LostAfter) {
			lost = append(lost, r)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	n := 0
	for _, r := range lost {
		why := fmt.Sprintf("%s: node %s did not answer; the instance was terminated without it", ReasonInternalError, r.node)
		if _, ok := st[r.node]; !ok {
			why = fmt.Sprintf("%s: node %s was removed; the instance was terminated without it", ReasonInternalError, r.node)
		}
		var done bool
		err := c.db.InTx(ctx, func(tx *store.Tx) error {
			var err error
			done, err = endInstance(ctx, tx, r.id, why, now)
			return err
		})
		if err != nil {
			return n, fmt.Errorf("terminate %s without its node: %w", r.id, err)
		}
		if done {
			n++
			c.takenIPs.forget() // its private address came free
			c.log.Warn("instance terminated without its node", "instance", r.id, "node", r.node)
		}
	}
	return n, nil
}

// endInstance makes an instance terminated now with a reason, giving back
// its usage, addresses and private IP (the last by leaving the live
// index). It reports false when it already was.
func endInstance(ctx context.Context, tx *store.Tx, id, reason string, now time.Time) (bool, error) {
	var state, node, vmType, account, user, zone string
	var cores int64
	if err := tx.QueryRow(ctx, `SELECT state, node_id, vm_type, account_id, user_name, zone, cores FROM instances WHERE id = ?`, id).
		Scan(&state, &node, &vmType, &account, &user, &zone, &cores); err != nil {
		return false, err
	}
	if state == nodeapi.StateTerminated {
		return false, nil
	}
	if err := addUsage(ctx, tx, node, vmType, -1); err != nil {
		return false, err
	}
	if err := releaseInstanceAddresses(ctx, tx, id, now); err != nil {
		return false, err
	}
	if err := usage.Record(ctx, tx, usage.Event{At: now, Kind: usage.KindInstance, Resource: id, State: nodeapi.StateTerminated,
		Account: account, User: user, VMType: vmType, Cores: cores, Zone: zone, Node: node}); err != nil {
		return false, err
	}
	_, err := tx.Exec(ctx, `UPDATE instances SET state = ?, desired = ?, reason = ?, public_ip = '', ended_at = ? WHERE id = ?`,
		nodeapi.StateTerminated, nodeapi.StateTerminated, reason, now.Unix(), id)
	return err == nil, err
}

// RunFailureChecks applies the failure policy every interval until ctx
// ends.
func (c *Cloud) RunFailureChecks(ctx context.Context, interval time.Duration) {
	c.every(ctx, interval, "failure checks", func(ctx context.Context) error {
		_, err := c.FinishLostTerminations(ctx)
		return err
	})
}

// Leadership decides whether this controller runs the periodic jobs now:
// several controllers on one database elect one (store.Leader) so each job
// runs once across them, and another takes over when it dies.
type Leadership interface {
	// Held reports whether this controller leads now, taking the lead if
	// nobody holds it.
	Held(ctx context.Context) (bool, error)
}

// every calls job every interval, when this controller leads the periodic
// jobs, until ctx ends, logging what fails.
func (c *Cloud) every(ctx context.Context, interval time.Duration, name string, job func(context.Context) error) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if c.cfg.Jobs != nil {
			if held, err := c.cfg.Jobs.Held(ctx); !held {
				if err != nil && ctx.Err() == nil {
					c.log.Warn(name+": leader election", "err", err)
				}
				continue
			}
		}
		if err := job(ctx); err != nil && ctx.Err() == nil {
			c.log.Warn(name, "err", err)
		}
	}
}

// LiveInstancesOnNode lists the instances placed on a node that are not
// terminated.
func LiveInstancesOnNode(ctx context.Context, db *store.DB, node string) ([]string, error) {
	ids, err := store.Column[string](db.Query(ctx, `SELECT id FROM instances WHERE node_id = ? AND state <> ? ORDER BY id`, node, nodeapi.StateTerminated))
	if err != nil {
		return nil, fmt.Errorf("instances on %s: %w", node, err)
	}
	return ids, nil
}

// TerminateOnNode terminates every live instance on a node being removed
// (Server.InternalError: the cloud took their host away) and returns them.
func TerminateOnNode(ctx context.Context, db *store.DB, node string) ([]string, error) {
	var ended []string
	now := time.Now()
	err := db.InTx(ctx, func(tx *store.Tx) error {
		ended = ended[:0]
		ids, err := store.Column[string](tx.Query(ctx, `SELECT id FROM instances WHERE node_id = ? AND state <> ?`, node, nodeapi.StateTerminated))
		if err != nil {
			return err
		}
		why := fmt.Sprintf("%s: node %s was removed by the administrator", ReasonInternalError, node)
		for _, id := range ids {
			done, err := endInstance(ctx, tx, id, why, now)
			if err != nil {
				return err
			}
			if done {
				ended = append(ended, id)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("terminate instances on %s: %w", node, err)
	}
	return ended, nil
}
