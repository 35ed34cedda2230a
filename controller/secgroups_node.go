package controller

import (
	"context"
	"fmt"
	"net/netip"
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
	rows, err := c.db.Query(ctx, `SELECT i.id, r.groups FROM instances i JOIN reservations r ON r.id = i.reservation_id
		WHERE i.node_id = ? AND i.state <> 'terminated'`, nodeID)
	if err != nil {
		return nil, fmt.Errorf("groups of the instances on %s: %w", nodeID, err)
	}
	of := map[string][]string{}
	for rows.Next() {
		var id, js string
		if err := rows.Scan(&id, &js); err != nil {
			rows.Close()
			return nil, err
		}
		of[id] = c.groupLists.of(js)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
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
	rows, err := c.db.Query(ctx, `SELECT group_id, egress, protocol, from_port, to_port, cidr, source_group_id
		FROM security_group_rules WHERE group_id IN (?`+strings.Repeat(`, ?`, len(ids)-1)+`)
		ORDER BY group_id, egress, protocol, from_port, to_port, cidr, source_group_id`, anySlice(ids)...)
	if err != nil {
		return nil, fmt.Errorf("security group rules: %w", err)
	}
	defer rows.Close()
	var peers []string
	for rows.Next() {
		var g string
		var egress int
		var r nodeapi.SecurityGroupRule
		if err := rows.Scan(&g, &egress, &r.Protocol, &r.From, &r.To, &r.CIDR, &r.Group); err != nil {
			return nil, err
		}
		sg := byID[g]
		if egress == 1 {
			sg.Egress = append(sg.Egress, r)
		} else {
			sg.Ingress = append(sg.Ingress, r)
		}
		if r.Group != "" {
			peers = append(peers, r.Group)
		}
	}
	slices.Sort(peers)
	return slices.Compact(peers), rows.Err()
}

// loadMembers fills the private addresses of the peer groups' live
// instances (an instance being terminated has left its groups) and their
// version, each group's from a read that started at or after fresh
// (memberReads).
func (c *Cloud) loadMembers(ctx context.Context, peers []string, byID map[string]*nodeapi.SecurityGroup, fresh time.Time) error {
	for _, p := range peers {
		ips, version, err := c.memberReads.members(ctx, p, fresh, func(ctx context.Context) ([]string, error) {
			return c.groupMembers(ctx, p)
		})
		if err != nil {
			return err
		}
		byID[p].Members, byID[p].MembersVersion = ips, version
	}
	return nil
}

// groupMembers reads the sorted private addresses of the group's live
// members.
func (c *Cloud) groupMembers(ctx context.Context, group string) ([]string, error) {
	inAny, args, err := c.inGroups(ctx, []string{group})
	if err != nil {
		return nil, err
	}
	rows, err := c.db.Query(ctx, `SELECT i.private_ip, r.groups FROM instances i JOIN reservations r ON r.id = i.reservation_id
		WHERE i.state <> 'terminated' AND i.desired <> 'terminated' AND i.private_ip <> '' AND `+inAny, args...)
	if err != nil {
		return nil, fmt.Errorf("members of security group %s: %w", group, err)
	}
	defer rows.Close()
	var as []netip.Addr
	for rows.Next() {
		var ip, js string
		if err := rows.Scan(&ip, &js); err != nil {
			return nil, err
		}
		// LIKE found the ID somewhere in the column; the parse says
		// whether it is one of the reservation's groups.
		if _, in := slices.BinarySearch(c.groupLists.of(js), group); !in {
			continue
		}
		if a, err := netip.ParseAddr(ip); err == nil {
			as = append(as, a)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	slices.SortFunc(as, func(a, b netip.Addr) int { return a.Compare(b) })
	as = slices.Compact(as)
	ips := make([]string, len(as))
	for i, a := range as {
		ips[i] = a.String()
	}
	return ips, nil
}

// notifyGroupNodes wakes the nodes that enforce the groups: those running
// a member of one. After a rule change (members false) it wakes them at
// once. After the groups' members changed (members true: a launch), it
// also wakes those running a member of a group whose rules name one of
// them as the peer (their member sets change), through NotifySoon, which
// gathers a burst of launches into few wake-ups; told are nodes the
// caller already woke at once for this change, which need no second one.
func (c *Cloud) notifyGroupNodes(ctx context.Context, groups []string, members bool, told ...string) {
	if c.cfg.Notify == nil || len(groups) == 0 {
		return
	}
	if members {
		more, err := store.Column[string](c.db.Query(ctx, `SELECT DISTINCT group_id FROM security_group_rules WHERE source_group_id IN (?`+
			strings.Repeat(`, ?`, len(groups)-1)+`)`, anySlice(groups)...))
		if err != nil {
			c.log.Warn("security group peers", "err", err)
			return
		}
		groups = append(groups, more...)
	}
	slices.Sort(groups)
	groups = slices.Compact(groups)
	inAny, args, err := c.inGroups(ctx, groups)
	if err != nil {
		c.log.Warn("nodes of security groups", "err", err)
		return
	}
	nodes, err := store.Column[string](c.db.Query(ctx, `SELECT DISTINCT i.node_id FROM instances i JOIN reservations r ON r.id = i.reservation_id
		WHERE i.state <> 'terminated' AND i.node_id <> '' AND `+inAny, args...))
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

// groupsOf is the security groups of the instances (their reservations'),
// for waking the nodes that enforce them; a failed read is logged and
// names none (those nodes then see the change at their next poll).
func (c *Cloud) groupsOf(ctx context.Context, ids []string) []string {
	if len(ids) == 0 {
		return nil
	}
	cols, err := store.Column[string](c.db.Query(ctx, `SELECT DISTINCT r.groups FROM instances i
		JOIN reservations r ON r.id = i.reservation_id WHERE i.id IN (?`+strings.Repeat(`, ?`, len(ids)-1)+`)`, anySlice(ids)...))
	if err != nil {
		c.log.Warn("security groups of instances", "err", err)
		return nil
	}
	var out []string
	for _, js := range cols {
		out = append(out, c.groupLists.of(js)...)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// inGroups is the condition that an instance (i) is a member of one of
// the groups through its reservation (r), with its arguments: the groups
// column is JSON, and group IDs are unique enough to find in it with
// LIKE. Members of a group are instances of the group's account (a launch
// names only the caller's own groups), so the LIKE runs over the owners'
// instances through their index, not over every instance of the cloud:
// the cost follows the account's size, not the cloud's.
func (c *Cloud) inGroups(ctx context.Context, groups []string) (string, []any, error) {
	owners, err := store.Column[string](c.db.Query(ctx, `SELECT DISTINCT account_id FROM security_groups WHERE id IN (?`+
		strings.Repeat(`, ?`, len(groups)-1)+`)`, anySlice(groups)...))
	if err != nil {
		return "", nil, fmt.Errorf("owners of security groups: %w", err)
	}
	if len(owners) == 0 {
		return `1 = 0`, nil, nil
	}
	likes := make([]string, len(groups))
	args := anySlice(owners)
	for i, g := range groups {
		likes[i] = `r.groups LIKE ?`
		args = append(args, `%"`+g+`"%`)
	}
	return `i.account_id IN (?` + strings.Repeat(`, ?`, len(owners)-1) + `) AND (` + strings.Join(likes, ` OR `) + `)`, args, nil
}
