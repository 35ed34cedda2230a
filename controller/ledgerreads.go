package controller

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"
	"time"

	"ironbark/internal/gather"
	"ironbark/internal/nodeapi"
)

// The node API reads the ledger for thousands of nodes: every heartbeat
// asks whether what its node reports would change the node's instance
// records (unchanged), and every answer read whole (a launch onto the
// node, a new stream, an answer older than the cache keeps one) reads the
// node's instances, their security groups and the groups' rules. One
// query each, at 10,000 nodes that was over a thousand queries a second
// for the node lane's eight connections. When the launches loaded the
// store, each of a whole read's queries took up to seconds, and a
// launch's answer to its node waited for them (p99 1.4-9.5 s after the
// client had RunInstances' answer, at 100,000 instances). ledgerReads
// gathers the reads of each kind asked for while one is running into the
// next one, a query for all their nodes (or groups): a busy store reads
// bigger groups, not more of them. A read starts after it was asked for,
// so what it says is as fresh as a query of its own.
type ledgerReads struct {
	heartbeat *gather.Gatherer[string, []ledgerRec]
	desired   *gather.Gatherer[string, []nodeapi.InstanceSpec]
	groups    *gather.Gatherer[string, map[string][]string]
	rules     *gather.Gatherer[[]string, map[string][]groupRule]
}

// ledgerRec is what unchanged needs of an instance on a node.
type ledgerRec struct {
	id, state, desired string
}

// groupRule is one rule of a security group, as a node is told it.
type groupRule struct {
	egress bool
	rule   nodeapi.SecurityGroupRule
}

// ledgerReadChunk bounds the nodes (or groups) of one query: a node holds
// tens of instances, terminated ones included until they are purged. A
// variable so a test can make a group span several queries.
var ledgerReadChunk = 500

func newLedgerReads(c *Cloud) *ledgerReads {
	return &ledgerReads{
		heartbeat: gather.New(c.readLedgers, 0, time.Minute),
		desired:   gather.New(c.readDesired, 0, time.Minute),
		groups:    gather.New(c.readInstanceGroups, 0, time.Minute),
		rules:     gather.New(c.readGroupRules, 0, time.Minute),
	}
}

// readByKey is gather.ByKey in chunks of ledgerReadChunk, its errors
// saying what was read.
func readByKey[V any](ctx context.Context, asked []string, what string,
	read func(ctx context.Context, keys []string, got map[string]V) error) ([]V, error) {
	return gather.ByKey(ctx, asked, ledgerReadChunk, func(ctx context.Context, keys []string, got map[string]V) error {
		if err := read(ctx, keys, got); err != nil {
			return fmt.Errorf("read %s (%d of them): %w", what, len(keys), err)
		}
		return nil
	})
}

// inClause is a query's "IN (?, ...)" for n values.
func inClause(n int) string { return `IN (?` + strings.Repeat(`, ?`, n-1) + `)` }

// readLedgers reads the instances of a group's nodes for unchanged.
func (c *Cloud) readLedgers(ctx context.Context, asked []string) ([][]ledgerRec, error) {
	return readByKey(ctx, asked, "the instances of nodes", func(ctx context.Context, nodes []string, got map[string][]ledgerRec) error {
		rows, err := c.db.Query(ctx, `SELECT node_id, id, state, desired FROM instances WHERE node_id `+inClause(len(nodes)), anySlice(nodes)...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var node string
			var r ledgerRec
			if err := rows.Scan(&node, &r.id, &r.state, &r.desired); err != nil {
				return err
			}
			got[node] = append(got[node], r)
		}
		return rows.Err()
	})
}

// readDesired reads the desired instances of a group's nodes
// (DesiredOnNode), each node's in instance order.
func (c *Cloud) readDesired(ctx context.Context, asked []string) ([][]nodeapi.InstanceSpec, error) {
	nets, err := c.zoneNets(ctx)
	if err != nil {
		return nil, err
	}
	return readByKey(ctx, asked, "the desired instances of nodes", func(ctx context.Context, nodes []string, got map[string][]nodeapi.InstanceSpec) error {
		rows, err := c.db.Query(ctx, `SELECT node_id, id, account_id, vm_type, mac, private_ip, key_name, public_key, user_data,
			desired, reboot_serial, artifacts, zone, public_ip, net_subnet, vlan FROM instances
			WHERE node_id `+inClause(len(nodes))+` AND state <> 'terminated' ORDER BY node_id, id`, anySlice(nodes)...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var node string
			var s nodeapi.InstanceSpec
			var vmType, userData, arts, zone, publicIP, netSubnet string
			var vlan int
			if err := rows.Scan(&node, &s.InstanceID, &s.AccountID, &vmType, &s.MAC, &s.PrivateIP, &s.KeyName, &s.PublicKey,
				&userData, &s.Desired, &s.RebootSerial, &arts, &zone, &publicIP, &netSubnet, &vlan); err != nil {
				return err
			}
			s.Network = c.zoneNetOf(nets, zone).instanceNetwork(publicIP, netSubnet, vlan)
			s.VMType = c.vmTypes[vmType]
			s.VMType.Name = vmType
			if userData != "" {
				s.UserData, _ = base64.StdEncoding.DecodeString(userData)
			}
			a, err := c.parsedArtifacts.of(arts)
			if err != nil {
				return fmt.Errorf("instance %s artifacts: %w", s.InstanceID, err)
			}
			s.Image, s.Kernel, s.Ramdisk = c.withURL(a.Image), c.withURLPtr(a.Kernel), c.withURLPtr(a.Ramdisk)
			got[node] = append(got[node], s)
		}
		return rows.Err()
	})
}

// readInstanceGroups reads the security groups of the live instances on
// a group's nodes: node -> instance -> groups (shared with groupLists:
// never modified).
func (c *Cloud) readInstanceGroups(ctx context.Context, asked []string) ([]map[string][]string, error) {
	return readByKey(ctx, asked, "the groups of nodes' instances", func(ctx context.Context, nodes []string, got map[string]map[string][]string) error {
		rows, err := c.db.Query(ctx, `SELECT i.node_id, i.id, r.groups FROM instances i JOIN reservations r ON r.id = i.reservation_id
			WHERE i.node_id `+inClause(len(nodes))+` AND i.state <> 'terminated'`, anySlice(nodes)...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var node, id, js string
			if err := rows.Scan(&node, &id, &js); err != nil {
				return err
			}
			if got[node] == nil {
				got[node] = map[string][]string{}
			}
			got[node][id] = c.groupLists.of(js)
		}
		return rows.Err()
	})
}

// readGroupRules reads the rules of the groups each caller asked for, in
// one query for all of them: each caller gets a map of its groups' rules,
// each group's in a fixed order.
func (c *Cloud) readGroupRules(ctx context.Context, asked [][]string) ([]map[string][]groupRule, error) {
	var all []string
	for _, a := range asked {
		all = append(all, a...)
	}
	rules, err := readByKey(ctx, all, "the rules of security groups", func(ctx context.Context, groups []string, got map[string][]groupRule) error {
		rows, err := c.db.Query(ctx, `SELECT group_id, egress, protocol, from_port, to_port, cidr, source_group_id
			FROM security_group_rules WHERE group_id `+inClause(len(groups))+`
			ORDER BY group_id, egress, protocol, from_port, to_port, cidr, source_group_id`, anySlice(groups)...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var g string
			var egress int
			var r groupRule
			if err := rows.Scan(&g, &egress, &r.rule.Protocol, &r.rule.From, &r.rule.To, &r.rule.CIDR, &r.rule.Group); err != nil {
				return err
			}
			r.egress = egress == 1
			got[g] = append(got[g], r)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, err
	}
	out := make([]map[string][]groupRule, len(asked))
	k := 0
	for i, a := range asked {
		out[i] = make(map[string][]groupRule, len(a))
		for _, g := range a {
			out[i][g] = rules[k]
			k++
		}
	}
	return out, nil
}
