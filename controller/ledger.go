package controller

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"ironbark/controller/usage"
	"ironbark/internal/nodeapi"
	"ironbark/internal/store"
)

// The methods in this file make Cloud the cluster side's
// cluster.InstanceLedger.

// DesiredOnNode implements cluster.InstanceLedger: every instance placed on the
// node that the node has not yet reported terminated, in instance ID order
// (read with other nodes' asked for meanwhile: ledgerreads.go).
func (c *Cloud) DesiredOnNode(ctx context.Context, nodeID string) ([]nodeapi.InstanceSpec, error) {
	specs, err := c.ledgerReads.desired.Do(ctx, nodeID)
	if err != nil {
		return nil, fmt.Errorf("desired on node %s: %w", nodeID, err)
	}
	// A copy: a node asked for twice in one group gets one read's specs,
	// and each caller sets their groups and versions.
	return slices.Clone(specs), nil
}

// parsedArtifacts caches the parse of instances' artifacts columns: every
// answer to a node parses each of its instances', and a cloud has few
// distinct values (one per image, kernel and ramdisk combination).
type parsedArtifacts struct {
	mu sync.Mutex
	m  map[string]artifacts
}

const maxParsedArtifacts = 4096

// of is the column's parse; its Kernel and Ramdisk are shared: callers
// must not modify them.
func (p *parsedArtifacts) of(js string) (artifacts, error) {
	p.mu.Lock()
	a, ok := p.m[js]
	p.mu.Unlock()
	if ok {
		return a, nil
	}
	if err := json.Unmarshal([]byte(js), &a); err != nil {
		return artifacts{}, err
	}
	p.mu.Lock()
	if p.m == nil || len(p.m) >= maxParsedArtifacts {
		p.m = map[string]artifacts{}
	}
	p.m[js] = a
	p.mu.Unlock()
	return a, nil
}

func (c *Cloud) withURL(a nodeapi.Artifact) nodeapi.Artifact {
	if c.cfg.ArtifactURL != nil && a.Digest != "" {
		a.URL = c.cfg.ArtifactURL(a.Digest)
	}
	return a
}

func (c *Cloud) withURLPtr(a *nodeapi.Artifact) *nodeapi.Artifact {
	if a == nil {
		return nil
	}
	b := c.withURL(*a)
	return &b
}

// accept decides the state to record when a node reports reported for an
// instance whose record says state and desired: the report wins unless it
// is behind what the user asked for (a node that has not yet acted on a
// terminate still says running).
func accept(state, desired, reported string) string {
	switch desired {
	case nodeapi.StateTerminated:
		if reported == nodeapi.StateTerminated || reported == nodeapi.StateShuttingDown {
			return reported
		}
		return nodeapi.StateShuttingDown
	case nodeapi.StateStopped:
		switch reported {
		case nodeapi.StateStopped, nodeapi.StateStopping, nodeapi.StateTerminated:
			return reported
		}
		return nodeapi.StateStopping
	}
	switch reported {
	case nodeapi.StatePending, nodeapi.StateRunning:
		return reported
	case nodeapi.StateStopped, nodeapi.StateStopping, nodeapi.StateShuttingDown, nodeapi.StateTerminated:
		// The guest went down by itself; a start in progress (pending)
		// is not undone by a stale report.
		if state == nodeapi.StateRunning || reported == nodeapi.StateTerminated {
			return reported
		}
	}
	return state
}

// Observe implements cluster.InstanceLedger: it records what a node reports of the
// instances placed on it.
func (c *Cloud) Observe(ctx context.Context, nodeID string, sts []nodeapi.InstanceStatus) error {
	// Most heartbeats change nothing (every instance as it was, no new
	// console output): one read says so, and no write transaction is
	// taken. A change that races with this read is seen at the next
	// heartbeat.
	if quiet, err := c.unchanged(ctx, nodeID, sts); err != nil || quiet {
		return err
	}
	terminating, freed := false, false
	var left []string // instances that left their groups' member lists here
	err := c.db.InTx(ctx, func(tx *store.Tx) error {
		terminating, freed, left = false, false, nil
		at := c.now()
		now := at.Unix()
		for _, st := range sts {
			var state, desired, reason, vmType, shutdown, account, user, zone string
			var cores int64
			err := tx.QueryRow(ctx, `SELECT state, desired, reason, vm_type, shutdown_behavior, account_id, user_name, zone, cores
				FROM instances WHERE id = ? AND node_id = ?`,
				st.InstanceID, nodeID).Scan(&state, &desired, &reason, &vmType, &shutdown, &account, &user, &zone, &cores)
			if err != nil {
				if errors.Is(err, sql.ErrNoRows) {
					continue // not ours on this node: the caller's policy handles strays
				}
				return err
			}
			next := accept(state, desired, st.State)
			if st.Reason != "" {
				reason = st.Reason
			}
			// A guest that shut itself down, launched with
			// InstanceInitiatedShutdownBehavior=terminate, is terminated.
			if shutdown == "terminate" && desired == nodeapi.StateRunning && state == nodeapi.StateRunning &&
				(next == nodeapi.StateStopping || next == nodeapi.StateStopped) {
				next, reason, terminating = nodeapi.StateShuttingDown, "Client.InstanceInitiatedShutdown: Instance initiated shutdown", true
				left = append(left, st.InstanceID)
				if _, err := tx.Exec(ctx, `UPDATE instances SET desired = ? WHERE id = ?`, nodeapi.StateTerminated, st.InstanceID); err != nil {
					return err
				}
				if err := releaseInstanceAddresses(ctx, tx, st.InstanceID, at); err != nil {
					return err
				}
			}
			ended := int64(0)
			if next == nodeapi.StateTerminated && state != nodeapi.StateTerminated {
				ended, freed = now, true
				// One terminated through the API left its groups then
				// (desired terminated); one that ended by itself leaves
				// them now.
				if desired != nodeapi.StateTerminated && !slices.Contains(left, st.InstanceID) {
					left = append(left, st.InstanceID)
				}
				if err := addUsage(ctx, tx, nodeID, vmType, -1); err != nil {
					return err
				}
			}
			if next != state || st.Reason != "" {
				if _, err := tx.Exec(ctx, `UPDATE instances SET state = ?, reason = ?,
					ended_at = CASE WHEN ? > 0 THEN ? ELSE ended_at END WHERE id = ?`,
					next, reason, ended, ended, st.InstanceID); err != nil {
					return err
				}
				if next != state {
					c.log.Info("instance state", "instance", st.InstanceID, "node", nodeID, "from", state, "to", next)
					// What the node reports is when time starts and stops
					// counting (running) for the usage record.
					if err := usage.Record(ctx, tx, usage.Event{At: at, Kind: usage.KindInstance, Resource: st.InstanceID, State: next,
						Account: account, User: user, VMType: vmType, Cores: cores, Zone: zone, Node: nodeID}); err != nil {
						return err
					}
				}
			}
			if len(st.ConsoleTail) > 0 {
				if _, err := tx.Exec(ctx, `UPDATE instances SET console = ?, console_at = ? WHERE id = ?`,
					base64.StdEncoding.EncodeToString(st.ConsoleTail), now, st.InstanceID); err != nil {
					return err
				}
			}
		}
		// The nodes whose rules name a group of an instance that left
		// as the peer update their member sets, as after
		// TerminateInstances.
		groups, err := c.groupsOf(ctx, tx, left)
		if err != nil {
			return err
		}
		return c.notifyGroupsInTx(ctx, tx, groups, true, nodeID)
	})
	if err == nil && freed {
		c.takenIPs.forget() // private addresses came free
	}
	if err == nil && (terminating || freed) {
		// The node now has a domain to remove, or an instance left its
		// desired set (it reported it terminated).
		c.notify(nodeID)
	}
	return err
}

// unchanged reports whether recording sts would change nothing. Its read
// is gathered with other heartbeats' (ledgerreads.go).
func (c *Cloud) unchanged(ctx context.Context, nodeID string, sts []nodeapi.InstanceStatus) (bool, error) {
	for _, st := range sts {
		if st.Reason != "" || len(st.ConsoleTail) > 0 {
			return false, nil
		}
	}
	if len(sts) == 0 {
		return true, nil
	}
	got, err := c.ledgerReads.heartbeat.Do(ctx, nodeID)
	if err != nil {
		return false, fmt.Errorf("observe %s: %w", nodeID, err)
	}
	recs := make(map[string]ledgerRec, len(got))
	for _, r := range got {
		recs[r.id] = r
	}
	for _, st := range sts {
		r, ok := recs[st.InstanceID]
		if !ok {
			continue // not ours on this node
		}
		if accept(r.state, r.desired, st.State) != r.state {
			return false, nil
		}
	}
	return true, nil
}

// addUsage counts delta instances of a type in or out of a node's usage,
// in the transaction that launches or ends them.
func addUsage(ctx context.Context, tx *store.Tx, node, vmType string, delta int) error {
	return addUsages(ctx, tx, vmType, map[string]int{node: delta})
}

// addUsages adds delta[node] instances of vmType to each node's usage in
// one statement (a launch over ten nodes was ten round trips under the
// placement lock). Nodes go in ID order, the order every writer of
// node_usage locks its rows in.
func addUsages(ctx context.Context, tx store.Execer, vmType string, delta map[string]int) error {
	if len(delta) == 0 {
		return nil
	}
	args := make([]any, 0, 3*len(delta))
	for _, node := range slices.Sorted(maps.Keys(delta)) {
		args = append(args, node, vmType, delta[node])
	}
	if err := store.ExecRows(ctx, tx, `INSERT INTO node_usage (node_id, vm_type, instances) VALUES`, 3, args,
		`ON CONFLICT (node_id, vm_type) DO UPDATE SET instances = node_usage.instances + excluded.instances`); err != nil {
		return fmt.Errorf("node usage: %w", err)
	}
	return nil
}

// Usage implements cluster.InstanceLedger: the resources of every
// instance not yet terminated, per node (usagecache.go).
func (c *Cloud) Usage(ctx context.Context) (NodeUsages, error) {
	u, _, err := c.usage(ctx)
	return u, err
}

// Purge forgets instances that ended longer ago than the TTL (EC2 shows a
// terminated instance for about an hour), with their tags, and the
// reservations and client tokens left without instances. It returns how
// many instances it removed.
func (c *Cloud) Purge(ctx context.Context) (int, error) {
	cutoff := c.now().Add(-c.cfg.TerminatedTTL).Unix()
	var n int
	err := c.db.InTx(ctx, func(tx *store.Tx) error {
		if err := trimMemberLog(ctx, tx, c.now()); err != nil {
			return err
		}
		const gone = `SELECT id FROM instances WHERE state = 'terminated' AND ended_at > 0 AND ended_at <= ?`
		if _, err := tx.Exec(ctx, `DELETE FROM tags WHERE resource_id IN (`+gone+`)`, cutoff); err != nil {
			return err
		}
		res, err := tx.Exec(ctx, `DELETE FROM instances WHERE state = 'terminated' AND ended_at > 0 AND ended_at <= ?`, cutoff)
		if err != nil {
			return err
		}
		n64, _ := res.RowsAffected()
		n = int(n64)
		if n == 0 {
			return nil
		}
		const empty = `SELECT r.id FROM reservations r WHERE NOT EXISTS (SELECT 1 FROM instances i WHERE i.reservation_id = r.id)`
		if _, err := tx.Exec(ctx, `DELETE FROM client_tokens WHERE reservation_id IN (`+empty+`)`); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `DELETE FROM reservations WHERE id IN (`+empty+`)`)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("purge instances: %w", err)
	}
	if n > 0 {
		c.log.Info("purged terminated instances", "count", n)
	}
	return n, nil
}

// RunPurge calls Purge every interval until ctx ends.
func (c *Cloud) RunPurge(ctx context.Context, interval time.Duration) {
	c.every(ctx, interval, "purge", func(ctx context.Context) error {
		_, err := c.Purge(ctx)
		return err
	})
}
