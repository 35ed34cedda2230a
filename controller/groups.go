package controller

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"ironbark/controller/ec2"
	"ironbark/internal/store"
)

// DefaultGroup is the security group every account has, made on first use.
const DefaultGroup = "default"

// ensureDefaultGroup makes the account's default group if it has none:
// instances in it reach each other, and everything may leave.
func ensureDefaultGroup(ctx context.Context, db *store.DB, account string) error {
	var n int
	if err := db.QueryRow(ctx, `SELECT COUNT(*) FROM security_groups WHERE account_id = ? AND name = ?`,
		account, DefaultGroup).Scan(&n); err != nil || n > 0 {
		return err
	}
	id := newID("sg", 17)
	err := db.InTx(ctx, func(tx *store.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO security_groups (id, account_id, name, description, created_at) VALUES (?, ?, ?, ?, ?)`,
			id, account, DefaultGroup, "default group", time.Now().Unix()); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO security_group_rules (id, group_id, egress, protocol, from_port, to_port, source_group_id, source_owner)
			VALUES (?, ?, 0, '-1', -1, -1, ?, ?)`, newID("sgr", 17), id, id, account); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO security_group_rules (id, group_id, egress, protocol, from_port, to_port, cidr)
			VALUES (?, ?, 1, '-1', -1, -1, '0.0.0.0/0')`, newID("sgr", 17), id)
		return err
	})
	if store.IsUniqueViolation(err) {
		return nil // another request made it first
	}
	return err
}

// groupRef is a security group as instances and rules name it.
type groupRef struct {
	ID, Name, Owner string
}

// findGroup finds a group of the caller's by id or name.
func findGroup(ctx context.Context, q store.Querier, k *call, id, name string) (groupRef, error) {
	var g groupRef
	var err error
	switch {
	case id != "":
		err = q.QueryRow(ctx, `SELECT id, name, account_id FROM security_groups WHERE id = ?`, id).Scan(&g.ID, &g.Name, &g.Owner)
		if err == nil && !k.owns(g.Owner) {
			err = sql.ErrNoRows
		}
	case name != "":
		err = q.QueryRow(ctx, `SELECT id, name, account_id FROM security_groups WHERE account_id = ? AND name = ?`,
			k.account(), name).Scan(&g.ID, &g.Name, &g.Owner)
		id = name
	default:
		return g, ec2.MissingParameter("GroupId")
	}
	if err != nil {
		return g, notFoundOr(err, ec2.NotFound("InvalidGroup.NotFound", id))
	}
	return g, nil
}

// CreateSecurityGroupResponse is CreateSecurityGroup's answer.
type CreateSecurityGroupResponse struct {
	ec2.ResponseMeta
	Return  bool   `xml:"return"`
	GroupID string `xml:"groupId"`
}

// createSecurityGroupParams are the parameters CreateSecurityGroup accepts.
var createSecurityGroupParams = []string{
	"GroupName", "GroupDescription", "VpcId", "TagSpecification.N.ResourceType", "TagSpecification.N.Tag.N.Key",
	"TagSpecification.N.Tag.N.Value",
}

func (c *Cloud) createSecurityGroup(ctx context.Context, k *call) (any, error) {
	name, err := k.required("GroupName")
	if err != nil {
		return nil, err
	}
	desc, err := k.required("GroupDescription")
	if err != nil {
		return nil, err
	}
	if len(name) > 255 || len(desc) > 255 || strings.HasPrefix(name, "sg-") {
		return nil, ec2.InvalidParameterValue("Invalid security group name or description")
	}
	if vpc := k.str("VpcId"); vpc != "" && vpc != c.defaultVPCID() {
		return nil, ec2.NotFound("InvalidVpcID.NotFound", vpc)
	}
	if err := ensureDefaultGroup(ctx, c.db, k.account()); err != nil {
		return nil, err
	}
	specs, err := k.tagSpecs("security-group")
	if err != nil {
		return nil, err
	}
	id := newID("sg", 17)
	err = c.db.InTx(ctx, func(tx *store.Tx) error {
		if err := checkQuota(ctx, tx, k.account(), QuotaSecurityGroups, 1); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO security_groups (id, account_id, name, description, created_at) VALUES (?, ?, ?, ?, ?)`,
			id, k.account(), name, desc, k.now.Unix()); err != nil {
			return err
		}
		if err := insertTags(ctx, tx, id, "security-group", k.account(), specs["security-group"]); err != nil {
			return err
		}
		// Every new group lets everything out, as EC2's do: tools that
		// manage egress themselves revoke this rule first.
		_, err := tx.Exec(ctx, `INSERT INTO security_group_rules (id, group_id, egress, protocol, from_port, to_port, cidr)
			VALUES (?, ?, 1, '-1', -1, -1, '0.0.0.0/0')`, newID("sgr", 17), id)
		return err
	})
	if store.IsUniqueViolation(err) {
		return nil, ec2.Duplicate("InvalidGroup.Duplicate", name)
	}
	if err != nil {
		return nil, fmt.Errorf("create security group: %w", err)
	}
	return &CreateSecurityGroupResponse{Return: true, GroupID: id}, nil
}

// deleteSecurityGroupParams are the parameters DeleteSecurityGroup accepts.
var deleteSecurityGroupParams = []string{
	"GroupId", "GroupName",
}

func (c *Cloud) deleteSecurityGroup(ctx context.Context, k *call) (any, error) {
	err := c.db.InTx(ctx, func(tx *store.Tx) error {
		g, err := findGroup(ctx, tx, k, k.str("GroupId"), k.str("GroupName"))
		if err != nil {
			return err
		}
		if g.Name == DefaultGroup {
			return ec2.Errorf("CannotDelete", "the specified group: \"%s\" name: \"default\" cannot be deleted by a user", g.ID)
		}
		var n int
		if err := tx.QueryRow(ctx, `SELECT COUNT(*) FROM security_group_rules WHERE source_group_id = ? AND group_id <> ?`,
			g.ID, g.ID).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			// Reservations name their groups in JSON; the ids are unique
			// enough to find with LIKE.
			if err := tx.QueryRow(ctx, `SELECT COUNT(*) FROM instances i JOIN reservations r ON r.id = i.reservation_id
				WHERE i.account_id = ? AND i.state <> 'terminated' AND r.groups LIKE ?`, g.Owner, "%"+g.ID+"%").Scan(&n); err != nil {
				return err
			}
		}
		if n > 0 {
			return ec2.Errorf("DependencyViolation", "resource %s has a dependent object", g.ID)
		}
		for _, q := range []string{`DELETE FROM security_group_rules WHERE group_id = ?`, `DELETE FROM tags WHERE resource_id = ?`,
			`DELETE FROM group_networks WHERE group_id = ?`, `DELETE FROM security_groups WHERE id = ?`} {
			if _, err := tx.Exec(ctx, q, g.ID); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return ok()
}

// rule is one stored permission of a group.
type rule struct {
	ID, GroupID        string
	Egress             bool
	Protocol           string
	From, To           int
	CIDR               string
	SourceGroup, Owner string
	Description        string
}

// parseProtocol normalises EC2's protocol spellings.
func parseProtocol(p string) (string, error) {
	switch strings.ToLower(p) {
	case "tcp", "6":
		return "tcp", nil
	case "udp", "17":
		return "udp", nil
	case "icmp", "1":
		return "icmp", nil
	case "-1", "all":
		return "-1", nil
	}
	if n, err := strconv.Atoi(p); err == nil && n >= 0 && n <= 255 {
		return p, nil
	}
	return "", ec2.InvalidParameterValue("Invalid value '%s' for IP protocol. Unknown protocol.", p)
}

// permissions reads IpPermissions.N (and the older flat form) into rules.
func (c *Cloud) permissions(ctx context.Context, q store.Querier, k *call, g groupRef, egress, revoke bool) ([]rule, error) {
	type perm struct {
		proto, from, to string
		cidrs           [][2]string // cidr, description
		groups          []groupRef
		ipv6            bool // names IPv6 ranges
	}
	var perms []perm
	items, err := k.Query().List("IpPermissions")
	if err != nil {
		return nil, err
	}
	for _, it := range items {
		p := perm{proto: it.String("IpProtocol"), from: it.String("FromPort"), to: it.String("ToPort")}
		ranges, err := it.List("IpRanges")
		if err != nil {
			return nil, err
		}
		for _, r := range ranges {
			p.cidrs = append(p.cidrs, [2]string{r.String("CidrIp"), r.String("Description")})
		}
		v6, err := it.List("Ipv6Ranges")
		if err != nil {
			return nil, err
		}
		if len(v6) > 0 {
			// There is no IPv6 here: a rule for it cannot be made, and
			// revoking one (as Terraform does with the default egress
			// rule's ::/0) removes nothing, successfully.
			if !revoke {
				return nil, ec2.Errorf("UnsupportedOperation", "ironbark instances have no IPv6: rules for IPv6 ranges cannot be added.")
			}
			p.ipv6 = true
		}
		pairs, err := it.List("Groups")
		if err != nil {
			return nil, err
		}
		for _, gp := range pairs {
			src, err := findGroup(ctx, q, k, gp.String("GroupId"), gp.String("GroupName"))
			if err != nil {
				return nil, err
			}
			p.groups = append(p.groups, src)
		}
		perms = append(perms, p)
	}
	if proto := k.str("IpProtocol"); proto != "" || k.str("CidrIp") != "" || k.str("SourceSecurityGroupName") != "" {
		p := perm{proto: proto, from: k.str("FromPort"), to: k.str("ToPort")}
		if p.proto == "" {
			p.proto = "-1"
		}
		if cidr := k.str("CidrIp"); cidr != "" {
			p.cidrs = append(p.cidrs, [2]string{cidr, ""})
		}
		if name := k.str("SourceSecurityGroupName"); name != "" {
			src, err := findGroup(ctx, q, k, "", name)
			if err != nil {
				return nil, err
			}
			p.groups = append(p.groups, src)
		}
		perms = append(perms, p)
	}
	if len(perms) == 0 {
		return nil, ec2.MissingParameter("IpPermissions")
	}
	var rules []rule
	for _, p := range perms {
		proto, err := parseProtocol(p.proto)
		if err != nil {
			return nil, err
		}
		from, to := -1, -1
		if proto != "-1" {
			if from, err = portNumber(p.from, proto); err != nil {
				return nil, err
			}
			if to, err = portNumber(p.to, proto); err != nil {
				return nil, err
			}
			if (proto == "tcp" || proto == "udp") && from > to {
				return nil, ec2.InvalidParameterValue("Invalid TCP/UDP port range %d-%d", from, to)
			}
		}
		if len(p.cidrs) == 0 && len(p.groups) == 0 {
			if p.ipv6 {
				continue
			}
			return nil, ec2.MissingParameter("IpRanges or Groups")
		}
		for _, cd := range p.cidrs {
			pfx, err := netip.ParsePrefix(cd[0])
			if err != nil || !pfx.Addr().Is4() {
				return nil, ec2.InvalidParameterValue("CIDR block %s is malformed", cd[0])
			}
			rules = append(rules, rule{GroupID: g.ID, Egress: egress, Protocol: proto, From: from, To: to,
				CIDR: pfx.Masked().String(), Description: cd[1]})
		}
		for _, src := range p.groups {
			rules = append(rules, rule{GroupID: g.ID, Egress: egress, Protocol: proto, From: from, To: to,
				SourceGroup: src.ID, Owner: src.Owner})
		}
	}
	return rules, nil
}

func portNumber(s, proto string) (int, error) {
	if s == "" {
		if proto == "tcp" || proto == "udp" {
			return 0, ec2.MissingParameter("FromPort/ToPort")
		}
		return -1, nil
	}
	n, err := strconv.Atoi(s)
	lo, hi := 0, 65535
	if proto == "icmp" {
		lo, hi = -1, 255
	}
	if err != nil || n < lo || n > hi {
		return 0, ec2.InvalidParameterValue("Invalid port %s for protocol %s", s, proto)
	}
	return n, nil
}

// findRule returns the id of an identical rule, or "".
func findRule(ctx context.Context, q store.Querier, r rule) (string, error) {
	var id string
	err := q.QueryRow(ctx, `SELECT id FROM security_group_rules WHERE group_id = ? AND egress = ? AND protocol = ?
		AND from_port = ? AND to_port = ? AND cidr = ? AND source_group_id = ?`,
		r.GroupID, boolInt(r.Egress), r.Protocol, r.From, r.To, r.CIDR, r.SourceGroup).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return id, err
}

// SecurityGroupRule is one item of Authorize*'s securityGroupRuleSet.
type SecurityGroupRule struct {
	RuleID     string `xml:"securityGroupRuleId"`
	GroupID    string `xml:"groupId"`
	OwnerID    string `xml:"groupOwnerId"`
	IsEgress   bool   `xml:"isEgress"`
	IPProtocol string `xml:"ipProtocol"`
	FromPort   int    `xml:"fromPort"`
	ToPort     int    `xml:"toPort"`
	CidrIPv4   string `xml:"cidrIpv4,omitempty"`
}

// AuthorizeResponse is Authorize*'s answer.
type AuthorizeResponse struct {
	ec2.ResponseMeta
	Return bool                `xml:"return"`
	Rules  []SecurityGroupRule `xml:"securityGroupRuleSet>item"`
}

// requestedRules finds the group an Authorize or Revoke call names and
// reads the rules it lists.
func (c *Cloud) requestedRules(ctx context.Context, tx *store.Tx, k *call, egress, revoke bool) (groupRef, []rule, error) {
	g, err := findGroup(ctx, tx, k, k.str("GroupId"), k.str("GroupName"))
	if err != nil {
		return g, nil, err
	}
	rules, err := c.permissions(ctx, tx, k, g, egress, revoke)
	return g, rules, err
}

// securityGroupRuleParams are the parameters the Authorize and Revoke actions accept.
var securityGroupRuleParams = []string{
	"GroupId", "GroupName", "IpPermissions.N.IpProtocol", "IpPermissions.N.FromPort", "IpPermissions.N.ToPort",
	"IpPermissions.N.IpRanges.N.CidrIp", "IpPermissions.N.IpRanges.N.Description",
	"IpPermissions.N.Ipv6Ranges.N.CidrIpv6", "IpPermissions.N.Ipv6Ranges.N.Description",
	"IpPermissions.N.Groups.N.GroupId", "IpPermissions.N.Groups.N.GroupName", "IpPermissions.N.Groups.N.UserId",
	"IpPermissions.N.Groups.N.Description", "IpProtocol", "FromPort", "ToPort", "CidrIp",
	"SourceSecurityGroupName", "SourceSecurityGroupOwnerId",
}

func (c *Cloud) authorize(ctx context.Context, k *call, egress bool) (any, error) {
	resp := &AuthorizeResponse{Return: true}
	var changed string
	err := c.db.InTx(ctx, func(tx *store.Tx) error {
		g, rules, err := c.requestedRules(ctx, tx, k, egress, false)
		if err != nil {
			return err
		}
		changed = g.ID
		for _, r := range rules {
			dup, err := findRule(ctx, tx, r)
			if err != nil {
				return err
			}
			if dup != "" {
				return ec2.Errorf("InvalidPermission.Duplicate", "the specified rule \"peer: %s, %s, ALLOW\" already exists", r.CIDR+r.SourceGroup, r.Protocol)
			}
			r.ID = newID("sgr", 17)
			if _, err := tx.Exec(ctx, `INSERT INTO security_group_rules (id, group_id, egress, protocol, from_port, to_port,
				cidr, source_group_id, source_owner, description) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
				r.ID, r.GroupID, boolInt(r.Egress), r.Protocol, r.From, r.To, r.CIDR, r.SourceGroup, r.Owner, r.Description); err != nil {
				return err
			}
			resp.Rules = append(resp.Rules, SecurityGroupRule{RuleID: r.ID, GroupID: g.ID, OwnerID: g.Owner, IsEgress: egress,
				IPProtocol: r.Protocol, FromPort: r.From, ToPort: r.To, CidrIPv4: r.CIDR})
		}
		return c.notifyGroupsInTx(ctx, tx, []string{changed}, false)
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

func (c *Cloud) revoke(ctx context.Context, k *call, egress bool) (any, error) {
	var changed string
	err := c.db.InTx(ctx, func(tx *store.Tx) error {
		g, rules, err := c.requestedRules(ctx, tx, k, egress, true)
		if err != nil {
			return err
		}
		changed = g.ID
		for _, r := range rules {
			id, err := findRule(ctx, tx, r)
			if err != nil {
				return err
			}
			if id == "" {
				return ec2.Errorf("InvalidPermission.NotFound", "The specified rule does not exist in this security group.")
			}
			if _, err := tx.Exec(ctx, `DELETE FROM security_group_rules WHERE id = ?`, id); err != nil {
				return err
			}
		}
		return c.notifyGroupsInTx(ctx, tx, []string{changed}, false)
	})
	if err != nil {
		return nil, err
	}
	return ok()
}

func (c *Cloud) authorizeIngress(ctx context.Context, k *call) (any, error) {
	return c.authorize(ctx, k, false)
}
func (c *Cloud) authorizeEgress(ctx context.Context, k *call) (any, error) {
	return c.authorize(ctx, k, true)
}
func (c *Cloud) revokeIngress(ctx context.Context, k *call) (any, error) {
	return c.revoke(ctx, k, false)
}
func (c *Cloud) revokeEgress(ctx context.Context, k *call) (any, error) {
	return c.revoke(ctx, k, true)
}

// UserIDGroupPair is a group a permission names as its peer.
type UserIDGroupPair struct {
	UserID    string `xml:"userId"`
	GroupID   string `xml:"groupId"`
	GroupName string `xml:"groupName,omitempty"`
}

// IPRange is a CIDR a permission names as its peer.
type IPRange struct {
	CidrIP      string `xml:"cidrIp"`
	Description string `xml:"description,omitempty"`
}

// IPPermission is one permission of a group.
type IPPermission struct {
	IPProtocol string            `xml:"ipProtocol"`
	FromPort   *int              `xml:"fromPort,omitempty"`
	ToPort     *int              `xml:"toPort,omitempty"`
	Groups     []UserIDGroupPair `xml:"groups>item"`
	IPRanges   []IPRange         `xml:"ipRanges>item"`
}

// SecurityGroup is one item of DescribeSecurityGroups.
type SecurityGroup struct {
	OwnerID     string         `xml:"ownerId"`
	GroupID     string         `xml:"groupId"`
	GroupName   string         `xml:"groupName"`
	Description string         `xml:"groupDescription"`
	VpcID       string         `xml:"vpcId"` // every group is in the default VPC (vpc.go)
	Ingress     []IPPermission `xml:"ipPermissions>item"`
	Egress      []IPPermission `xml:"ipPermissionsEgress>item"`
	Tags        []Tag          `xml:"tagSet>item"`
}

// DescribeSecurityGroupsResponse is DescribeSecurityGroups' answer.
type DescribeSecurityGroupsResponse struct {
	ec2.ResponseMeta
	Groups    []SecurityGroup `xml:"securityGroupInfo>item"`
	NextToken string          `xml:"nextToken,omitempty"`
}

// describeSecurityGroupsParams are the parameters DescribeSecurityGroups accepts.
var describeSecurityGroupsParams = []string{
	"GroupId.N", "GroupName.N", "Filter.N.Name", "Filter.N.Value.N", "MaxResults", "NextToken",
}

func (c *Cloud) describeSecurityGroups(ctx context.Context, k *call) (any, error) {
	notFound := func(id string) error { return ec2.NotFound("InvalidGroup.NotFound", id) }
	d := &describer[SecurityGroup]{
		ids: []idParam[SecurityGroup]{
			{name: "GroupId", of: func(g SecurityGroup) string { return g.GroupID }, notFound: notFound},
			// Group names are per account: a name names the caller's own
			// group, even for the admin.
			{name: "GroupName", of: func(g SecurityGroup) string {
				if g.OwnerID != k.account() {
					return ""
				}
				return g.GroupName
			}, notFound: notFound},
		},
		filters: securityGroupFilters,
		field:   func(g SecurityGroup, name string) []string { return g.field(name) },
		tags:    func(g SecurityGroup) []Tag { return g.Tags },
		key:     func(g SecurityGroup) string { return g.GroupID },
		paged:   true, lo: 5, hi: 1000,
		load: func(ctx context.Context, k *call, _ map[string][]string) ([]SecurityGroup, error) {
			return c.loadSecurityGroups(ctx, k)
		},
	}
	page, next, err := d.run(ctx, k)
	if err != nil {
		return nil, err
	}
	return &DescribeSecurityGroupsResponse{Groups: page, NextToken: next}, nil
}

var securityGroupFilters = []string{"group-id", "group-name", "description", "owner-id", "vpc-id", "ip-permission.protocol",
	"ip-permission.cidr", "ip-permission.from-port", "ip-permission.to-port", "ip-permission.group-id",
	"egress.ip-permission.cidr", "egress.ip-permission.protocol"}

// loadSecurityGroups loads the caller's groups (all for the admin) with
// their rules and tags; the caller's default group is made first.
func (c *Cloud) loadSecurityGroups(ctx context.Context, k *call) ([]SecurityGroup, error) {
	if err := ensureDefaultGroup(ctx, c.db, k.account()); err != nil {
		return nil, err
	}
	tags, err := loadTags(ctx, c.db, k, "security-group")
	if err != nil {
		return nil, err
	}
	where, args := ` WHERE g.account_id = ?`, []any{k.account()}
	if k.admin() {
		where, args = ``, nil
	}
	groups := map[string]*SecurityGroup{}
	var order []*SecurityGroup
	rows, err := c.db.Query(ctx, `SELECT g.id, g.name, g.description, g.account_id FROM security_groups g`+where, args...)
	if err != nil {
		return nil, fmt.Errorf("describe security groups: %w", err)
	}
	for rows.Next() {
		g := &SecurityGroup{}
		if err := rows.Scan(&g.GroupID, &g.GroupName, &g.Description, &g.OwnerID); err != nil {
			rows.Close()
			return nil, err
		}
		groups[g.GroupID] = g
		order = append(order, g)
	}
	rows.Close()
	names := map[string]string{}
	for _, g := range order {
		names[g.GroupID] = g.GroupName
	}
	rows, err = c.db.Query(ctx, `SELECT r.group_id, r.egress, r.protocol, r.from_port, r.to_port, r.cidr, r.source_group_id,
		r.source_owner, r.description FROM security_group_rules r JOIN security_groups g ON g.id = r.group_id`+where, args...)
	if err != nil {
		return nil, fmt.Errorf("describe security groups: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var r rule
		var egress int
		if err := rows.Scan(&r.GroupID, &egress, &r.Protocol, &r.From, &r.To, &r.CIDR, &r.SourceGroup, &r.Owner, &r.Description); err != nil {
			return nil, err
		}
		g := groups[r.GroupID]
		if g == nil {
			continue
		}
		perm := IPPermission{IPProtocol: r.Protocol}
		if r.Protocol != "-1" {
			from, to := r.From, r.To
			perm.FromPort, perm.ToPort = &from, &to
		}
		if r.CIDR != "" {
			perm.IPRanges = []IPRange{{CidrIP: r.CIDR, Description: r.Description}}
		} else {
			perm.Groups = []UserIDGroupPair{{UserID: r.Owner, GroupID: r.SourceGroup, GroupName: names[r.SourceGroup]}}
		}
		if egress == 1 {
			g.Egress = mergePermission(g.Egress, perm)
		} else {
			g.Ingress = mergePermission(g.Ingress, perm)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	out := make([]SecurityGroup, len(order))
	for i, g := range order {
		g.Tags = tagSet(tags[g.GroupID])
		g.VpcID = c.defaultVPCID()
		out[i] = *g
	}
	return out, nil
}

// mergePermission folds a rule into the permission with the same protocol
// and ports, as EC2 lists them.
func mergePermission(ps []IPPermission, p IPPermission) []IPPermission {
	for i := range ps {
		q := &ps[i]
		if q.IPProtocol == p.IPProtocol && eqPort(q.FromPort, p.FromPort) && eqPort(q.ToPort, p.ToPort) {
			q.IPRanges = append(q.IPRanges, p.IPRanges...)
			q.Groups = append(q.Groups, p.Groups...)
			return ps
		}
	}
	return append(ps, p)
}

func eqPort(a, b *int) bool { return (a == nil && b == nil) || (a != nil && b != nil && *a == *b) }

func (g *SecurityGroup) field(name string) []string {
	switch name {
	case "group-id":
		return []string{g.GroupID}
	case "group-name":
		return []string{g.GroupName}
	case "description":
		return []string{g.Description}
	case "owner-id":
		return []string{g.OwnerID}
	case "vpc-id":
		return []string{g.VpcID}
	}
	perms := g.Ingress
	if strings.HasPrefix(name, "egress.") {
		perms, name = g.Egress, strings.TrimPrefix(name, "egress.")
	}
	var out []string
	for _, p := range perms {
		switch name {
		case "ip-permission.protocol":
			out = append(out, p.IPProtocol)
		case "ip-permission.from-port":
			if p.FromPort != nil {
				out = append(out, strconv.Itoa(*p.FromPort))
			}
		case "ip-permission.to-port":
			if p.ToPort != nil {
				out = append(out, strconv.Itoa(*p.ToPort))
			}
		case "ip-permission.cidr":
			for _, r := range p.IPRanges {
				out = append(out, r.CidrIP)
			}
		case "ip-permission.group-id":
			for _, gp := range p.Groups {
				out = append(out, gp.GroupID)
			}
		}
	}
	return out
}
