package controller

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"ironbark/internal/nodeapi"
	"ironbark/internal/store"
)

// This file tells the nodes about security groups (cluster.SecurityGroupLedger):
// the groups of the instances on a node, their rules, and the members of
// the peer groups those rules name. Groups live in the reservation (the
// groups column, JSON), so membership changes with launches and
// terminations.

// SecurityGroupsOnNode implements cluster.SecurityGroupLedger.
func (c *Cloud) SecurityGroupsOnNode(ctx context.Context, nodeID string, specs []nodeapi.InstanceSpec, fresh time.Time) ([]nodeapi.SecurityGroup, error) {
	if len(specs) == 0 {
		return nil, nil
	}
	of, err := c.ledgerReads.groups.Do(ctx, nodeID)
	if err != nil {
		return nil, fmt.Errorf("groups of the instances on %s: %w", nodeID, err)
	}
	byID := map[string]*nodeapi.SecurityGroup{}
	var ids []string
	for i := range specs {
		specs[i].SecurityGroups = slices.Clone(of[specs[i].InstanceID])
		for _, g := range specs[i].SecurityGroups {
			if byID[g] == nil {
				byID[g] = &nodeapi.SecurityGroup{ID: g}
				ids = append(ids, g)
			}
		}
	}
	if len(ids) == 0 {
		return nil, nil
	}
	peers, err := c.loadNodeRules(ctx, ids, byID)
	if err != nil {
		return nil, err
	}
	for _, p := range peers {
		if byID[p] == nil {
			byID[p] = &nodeapi.SecurityGroup{ID: p}
			ids = append(ids, p)
		}
	}
	if err := c.loadMembers(ctx, peers, byID, fresh); err != nil {
		return nil, err
	}
	slices.Sort(ids)
	out := make([]nodeapi.SecurityGroup, len(ids))
	for i, id := range ids {
		out[i] = *byID[id]
	}
	return out, nil
}

// loadNodeRules fills the groups' rules and returns the peer groups they
// name, sorted.
func (c *Cloud) loadNodeRules(ctx context.Context, ids []string, byID map[string]*nodeapi.SecurityGroup) ([]string, error) {
	rules, err := c.ledgerReads.rules.Do(ctx, ids)
	if err != nil {
		return nil, fmt.Errorf("security group rules: %w", err)
	}
	var peers []string
	for _, g := range ids {
		sg := byID[g]
		for _, r := range rules[g] {
			if r.egress {
				sg.Egress = append(sg.Egress, r.rule)
			} else {
				sg.Ingress = append(sg.Ingress, r.rule)
			}
			if r.rule.Group != "" {
				peers = append(peers, r.rule.Group)
			}
		}
	}
	slices.Sort(peers)
	return slices.Compact(peers), nil
}

// loadMembers fills the private addresses of the peer groups' live
// instances (an instance being terminated has left its groups) and their
// version, from this controller's copy of the membership once it shows
// every change committed before fresh (memberLog).
func (c *Cloud) loadMembers(ctx context.Context, peers []string, byID map[string]*nodeapi.SecurityGroup, fresh time.Time) error {
	if len(peers) == 0 {
		return nil
	}
	if err := c.memberLog.sync(ctx, c, fresh); err != nil {
		return err
	}
	for _, p := range peers {
		byID[p].Members, byID[p].MembersVersion = c.memberLog.members(p)
	}
	return nil
}

// PeerMembers implements cluster.PeerMemberLedger: the groups' member
// lists and versions, from this controller's copy of the membership once
// it shows every change committed before fresh.
func (c *Cloud) PeerMembers(ctx context.Context, groups []string, fresh time.Time) ([]nodeapi.SecurityGroup, error) {
	if err := c.memberLog.sync(ctx, c, fresh); err != nil {
		return nil, err
	}
	out := make([]nodeapi.SecurityGroup, len(groups))
	for i, g := range groups {
		out[i].ID = g
		out[i].Members, out[i].MembersVersion = c.memberLog.members(g)
	}
	return out, nil
}

// NodeMark names the changes of the node's instances seen so far by
// reads that started at or after fresh (cluster.PeerMemberLedger): a
// launch onto the node or a termination there changes it.
func (c *Cloud) NodeMark(ctx context.Context, node string, fresh time.Time) (int64, error) {
	if err := c.memberLog.sync(ctx, c, fresh); err != nil {
		return 0, err
	}
	return c.memberLog.nodeMark(node), nil
}

// notifyGroupsInTx tells NotifyGroupsInTx of a change of the groups
// inside tx; with no NotifyGroupsInTx, notifyGroupNodes is called once tx
// commits (told: as there).
func (c *Cloud) notifyGroupsInTx(ctx context.Context, tx *store.Tx, groups []string, members bool, told ...string) error {
	if len(groups) == 0 {
		return nil
	}
	if c.cfg.NotifyGroupsInTx == nil {
		tx.AfterCommit(func() { c.notifyGroupNodes(ctx, groups, members, told...) })
		return nil
	}
	return c.cfg.NotifyGroupsInTx(ctx, tx, groups, members)
}

// notifyGroupNodes wakes the nodes that enforce the groups
// (NodesOfGroups), after the change committed, where no NotifyGroupsInTx
// tells them in its transaction. After a rule change (members false) it
// wakes them at once; after the groups' members changed (a launch) it
// tells NotifySoon, which gathers a burst of launches into few wake-ups.
// told are nodes the caller already woke at once for this change, which
// need no second one.
func (c *Cloud) notifyGroupNodes(ctx context.Context, groups []string, members bool, told ...string) {
	if c.cfg.Notify == nil || len(groups) == 0 {
		return
	}
	// The change is committed: reads from now on show it.
	nodes, err := c.NodesOfGroups(ctx, groups, members, time.Now())
	if err != nil {
		c.log.Warn("nodes of security groups", "err", err)
		return
	}
	if !members {
		c.notify(nodes...)
		return
	}
	soon := c.cfg.NotifySoon
	if soon == nil {
		soon = c.cfg.Notify
	}
	done := make(map[string]bool, len(told))
	for _, n := range told {
		done[n] = true
	}
	for _, n := range nodes {
		if n != "" && !done[n] {
			done[n] = true
			soon(n)
		}
	}
}

// NodesOfGroups returns the nodes that enforce the groups, from reads
// that started at or after fresh (cluster.GroupLedger): those running a
// member of one and, when members (the groups' member lists changed),
// those running a member of a group whose rules name one of them as the
// peer (their member sets change).
func (c *Cloud) NodesOfGroups(ctx context.Context, groups []string, members bool, fresh time.Time) ([]string, error) {
	if len(groups) == 0 {
		return nil, nil
	}
	groups = slices.Clone(groups)
	if members {
		more, err := store.Column[string](c.db.Query(ctx, `SELECT DISTINCT group_id FROM security_group_rules WHERE source_group_id IN (?`+
			strings.Repeat(`, ?`, len(groups)-1)+`)`, anySlice(groups)...))
		if err != nil {
			return nil, fmt.Errorf("security group peers: %w", err)
		}
		groups = append(groups, more...)
	}
	slices.Sort(groups)
	groups = slices.Compact(groups)
	if err := c.memberLog.sync(ctx, c, fresh); err != nil {
		return nil, err
	}
	return slices.DeleteFunc(c.memberLog.nodesOf(groups), func(n string) bool { return n == "" }), nil
}

// groupsOf is the security groups of the instances (their reservations'),
// for waking the nodes that enforce them.
func (c *Cloud) groupsOf(ctx context.Context, q store.Querier, ids []string) ([]string, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	cols, err := store.Column[string](q.Query(ctx, `SELECT DISTINCT r.groups FROM instances i
		JOIN reservations r ON r.id = i.reservation_id WHERE i.id IN (?`+strings.Repeat(`, ?`, len(ids)-1)+`)`, anySlice(ids)...))
	if err != nil {
		return nil, fmt.Errorf("security groups of instances: %w", err)
	}
	var out []string
	for _, js := range cols {
		out = append(out, c.groupLists.of(js)...)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}
