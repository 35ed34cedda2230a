package controller

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"ironbark/controller/ec2"
	"ironbark/controller/usage"
	"ironbark/internal/store"
)

// addressPool is the set of public addresses AllocateAddress hands out.
type addressPool struct {
	ranges [][2]netip.Addr // inclusive
}

// parseAddressPool reads CIDRs ("198.51.100.0/28": the network and
// broadcast addresses are left out) and ranges ("a.b.c.d-a.b.c.e").
func parseAddressPool(specs []string) (*addressPool, error) {
	p := &addressPool{}
	for _, s := range specs {
		s = strings.TrimSpace(s)
		if lo, hi, ok := strings.Cut(s, "-"); ok {
			a, err1 := netip.ParseAddr(strings.TrimSpace(lo))
			b, err2 := netip.ParseAddr(strings.TrimSpace(hi))
			if err1 != nil || err2 != nil || !a.Is4() || !b.Is4() || b.Less(a) {
				return nil, fmt.Errorf("public address range %q: want a.b.c.d-a.b.c.e", s)
			}
			p.ranges = append(p.ranges, [2]netip.Addr{a, b})
			continue
		}
		pfx, err := netip.ParsePrefix(s)
		if err != nil || !pfx.Addr().Is4() {
			return nil, fmt.Errorf("public address block %q: want an IPv4 CIDR or range", s)
		}
		pfx = pfx.Masked()
		first, last := pfx.Addr(), lastAddr(pfx)
		if pfx.Bits() <= 30 {
			first, last = first.Next(), last.Prev()
		}
		p.ranges = append(p.ranges, [2]netip.Addr{first, last})
	}
	return p, nil
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]) | host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// size is the number of addresses in the pool.
func (p *addressPool) size() int {
	n := 0
	for _, r := range p.ranges {
		a, b := r[0].As4(), r[1].As4()
		lo := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
		hi := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
		n += int(hi-lo) + 1
	}
	return n
}

// first returns the lowest pool address not in used.
func (p *addressPool) first(used map[string]bool) (string, bool) {
	a, ok := p.firstFrom(used, netip.Addr{})
	if !ok {
		return "", false
	}
	return a.String(), true
}

// firstFrom is the lowest address of the pool at or above from (the
// zero Addr: the pool's start) not in used.
func (p *addressPool) firstFrom(used map[string]bool, from netip.Addr) (netip.Addr, bool) {
	for _, r := range p.ranges {
		a := r[0]
		if from.IsValid() && a.Less(from) {
			if r[1].Less(from) {
				continue
			}
			a = from
		}
		for ; ; a = a.Next() {
			if !used[a.String()] {
				return a, true
			}
			if a == r[1] {
				break
			}
		}
	}
	return netip.Addr{}, false
}

// AllocateAddressResponse is AllocateAddress' answer.
type AllocateAddressResponse struct {
	ec2.ResponseMeta
	PublicIP     string `xml:"publicIp"`
	Domain       string `xml:"domain"`
	AllocationID string `xml:"allocationId"`
}

// allocateAddressParams are the parameters AllocateAddress accepts.
var allocateAddressParams = []string{
	"Domain",
}

// drawPublicAddress picks the lowest free address of the pool, in the
// transaction that takes it.
func (c *Cloud) drawPublicAddress(ctx context.Context, tx *store.Tx) (string, error) {
	held, err := allocatedAddresses(ctx, tx)
	if err != nil {
		return "", err
	}
	used := make(map[string]bool, len(held))
	for _, ip := range held {
		used[ip] = true
	}
	pool, err := c.publicPool(ctx, tx)
	if err != nil {
		return "", err
	}
	if pool.size() == 0 {
		return "", ec2.Errorf("AddressLimitExceeded", "This cloud has no public addresses to allocate: "+
			"its administrator adds some with 'ironbark address pool add CIDR' (or publicAddresses in controller.json).")
	}
	ip, ok := pool.first(used)
	if !ok {
		return "", ec2.Errorf("AddressLimitExceeded", "All %d public addresses of this cloud are allocated: "+
			"its administrator adds more with 'ironbark address pool add CIDR'.", pool.size())
	}
	return ip, nil
}

// releaseInstanceAddresses frees what an ending instance holds: its public
// address from launch goes back to the pool, an allocated one is
// disassociated and stays its account's.
func releaseInstanceAddresses(ctx context.Context, tx *store.Tx, instanceID string, now time.Time) error {
	if err := recordAutoRelease(ctx, tx, now, `instance_id = ?`, instanceID); err != nil {
		return err
	}
	for _, q := range []string{
		`DELETE FROM addresses WHERE instance_id = ? AND auto = 1`,
		`UPDATE addresses SET instance_id = '', association_id = '' WHERE instance_id = ?`,
		`UPDATE instances SET public_ip = '' WHERE id = ?`,
	} {
		if _, err := tx.Exec(ctx, q, instanceID); err != nil {
			return fmt.Errorf("release addresses of %s: %w", instanceID, err)
		}
	}
	return nil
}

func (c *Cloud) allocateAddress(ctx context.Context, k *call) (any, error) {
	domain := k.str("Domain")
	if domain == "" {
		domain = "standard"
	}
	if domain != "standard" && domain != "vpc" {
		return nil, ec2.InvalidValue("Domain", domain, "Expected standard or vpc.")
	}
	resp := &AllocateAddressResponse{Domain: domain, AllocationID: newID("eipalloc", 17)}
	err := c.db.InTx(ctx, func(tx *store.Tx) error {
		if err := checkQuota(ctx, tx, k.account(), QuotaAddresses, 1); err != nil {
			return err
		}
		ip, err := c.drawPublicAddress(ctx, tx)
		if err != nil {
			return err
		}
		resp.PublicIP = ip
		if _, err = tx.Exec(ctx, `INSERT INTO addresses (public_ip, allocation_id, account_id, created_at) VALUES (?, ?, ?, ?)`,
			ip, resp.AllocationID, k.account(), k.now.Unix()); err != nil {
			return err
		}
		return usage.Record(ctx, tx, addressEvent(k.now, ip, usage.StateHeld, k.account(), k.Principal.User))
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// address is an allocated address as stored.
type address struct {
	IP, AllocationID, Owner, InstanceID, AssociationID string
}

// findAddress loads an address of the caller's by allocation id or IP.
func findAddress(ctx context.Context, q store.Querier, k *call, allocID, ip string) (address, error) {
	var a address
	col, key, code := "allocation_id", allocID, "InvalidAllocationID.NotFound"
	if allocID == "" {
		col, key, code = "public_ip", ip, "InvalidAddress.NotFound"
	}
	if key == "" {
		return a, ec2.MissingParameter("AllocationId")
	}
	err := q.QueryRow(ctx, `SELECT public_ip, allocation_id, account_id, instance_id, association_id FROM addresses WHERE auto = 0 AND `+col+` = ?`, key).
		Scan(&a.IP, &a.AllocationID, &a.Owner, &a.InstanceID, &a.AssociationID)
	if err == nil && !k.owns(a.Owner) {
		err = sql.ErrNoRows
	}
	if err != nil {
		return a, notFoundOr(err, ec2.NotFound(code, key))
	}
	return a, nil
}

func disassociate(ctx context.Context, tx *store.Tx, a address) error {
	if a.InstanceID == "" {
		return nil
	}
	if _, err := tx.Exec(ctx, `UPDATE instances SET public_ip = '' WHERE id = ? AND public_ip = ?`, a.InstanceID, a.IP); err != nil {
		return err
	}
	_, err := tx.Exec(ctx, `UPDATE addresses SET instance_id = '', association_id = '' WHERE public_ip = ?`, a.IP)
	return err
}

// releaseAddressParams are the parameters ReleaseAddress accepts.
var releaseAddressParams = []string{
	"PublicIp", "AllocationId",
}

func (c *Cloud) releaseAddress(ctx context.Context, k *call) (any, error) {
	err := c.db.InTx(ctx, func(tx *store.Tx) error {
		a, err := findAddress(ctx, tx, k, k.str("AllocationId"), k.str("PublicIp"))
		if err != nil {
			return err
		}
		if err := disassociate(ctx, tx, a); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM tags WHERE resource_id = ?`, a.AllocationID); err != nil {
			return err
		}
		if _, err = tx.Exec(ctx, `DELETE FROM addresses WHERE public_ip = ?`, a.IP); err != nil {
			return err
		}
		if err := usage.Record(ctx, tx, addressEvent(k.now, a.IP, usage.StateReleased, a.Owner, k.Principal.User)); err != nil {
			return err
		}
		return c.notifyInstancesInTx(ctx, tx, a.InstanceID)
	})
	if err != nil {
		return nil, err
	}
	return ok()
}

// AssociateAddressResponse is AssociateAddress' answer.
type AssociateAddressResponse struct {
	ec2.ResponseMeta
	Return        bool   `xml:"return"`
	AssociationID string `xml:"associationId"`
}

// associateAddressParams are the parameters AssociateAddress accepts.
var associateAddressParams = []string{
	"InstanceId", "PublicIp", "AllocationId", "AllowReassociation",
}

func (c *Cloud) associateAddress(ctx context.Context, k *call) (any, error) {
	instanceID, err := k.required("InstanceId")
	if err != nil {
		return nil, err
	}
	// An allocation (VPC style) moves from another instance only when the
	// caller allows it, as EC2's does; a bare PublicIp (Classic) always may.
	reassoc, err := k.Query().Bool("AllowReassociation", k.str("AllocationId") == "")
	if err != nil {
		return nil, err
	}
	resp := &AssociateAddressResponse{Return: true, AssociationID: newID("eipassoc", 17)}
	nets, err := c.zoneNets(ctx)
	if err != nil {
		return nil, err
	}
	err = c.db.InTx(ctx, func(tx *store.Tx) error {
		a, err := findAddress(ctx, tx, k, k.str("AllocationId"), k.str("PublicIp"))
		if err != nil {
			return err
		}
		moved := []string{a.InstanceID, instanceID}
		var owner, state, oldIP, zone string
		err = tx.QueryRow(ctx, `SELECT account_id, state, public_ip, zone FROM instances WHERE id = ?`, instanceID).Scan(&owner, &state, &oldIP, &zone)
		if err == nil && owner != a.Owner {
			err = sql.ErrNoRows
		}
		if err != nil {
			return notFoundOr(err, ec2.NotFound("InvalidInstanceID.NotFound", instanceID))
		}
		if state == "terminated" || state == "shutting-down" {
			return ec2.Errorf("IncorrectInstanceState", "The instance '%s' is not in a valid state for this operation.", instanceID)
		}
		if err := noPublicInSystem(c.zoneNetOf(nets, zone), zone); err != nil {
			return err
		}
		if a.InstanceID != "" && a.InstanceID != instanceID && !reassoc {
			return ec2.Errorf("Resource.AlreadyAssociated", "resource %s is already associated with associate-id %s", a.AllocationID, a.AssociationID)
		}
		if err := disassociate(ctx, tx, a); err != nil {
			return err
		}
		if oldIP != "" {
			// The instance's address from launch goes back to the pool,
			// as EC2 releases it when an Elastic IP takes its place.
			if err := recordAutoRelease(ctx, tx, k.now, `public_ip = ?`, oldIP); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `DELETE FROM addresses WHERE public_ip = ? AND auto = 1`, oldIP); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `UPDATE addresses SET instance_id = '', association_id = '' WHERE public_ip = ?`, oldIP); err != nil {
				return err
			}
		}
		if _, err := tx.Exec(ctx, `UPDATE addresses SET instance_id = ?, association_id = ? WHERE public_ip = ?`,
			instanceID, resp.AssociationID, a.IP); err != nil {
			return err
		}
		if _, err = tx.Exec(ctx, `UPDATE instances SET public_ip = ? WHERE id = ?`, a.IP, instanceID); err != nil {
			return err
		}
		return c.notifyInstancesInTx(ctx, tx, moved...)
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// disassociateAddressParams are the parameters DisassociateAddress accepts.
var disassociateAddressParams = []string{
	"PublicIp", "AssociationId",
}

func (c *Cloud) disassociateAddress(ctx context.Context, k *call) (any, error) {
	err := c.db.InTx(ctx, func(tx *store.Tx) error {
		var a address
		var err error
		if id := k.str("AssociationId"); id != "" {
			err = tx.QueryRow(ctx, `SELECT public_ip, allocation_id, account_id, instance_id, association_id FROM addresses WHERE auto = 0 AND association_id = ?`, id).
				Scan(&a.IP, &a.AllocationID, &a.Owner, &a.InstanceID, &a.AssociationID)
			if err == nil && !k.owns(a.Owner) {
				err = sql.ErrNoRows
			}
			if err != nil {
				return notFoundOr(err, ec2.NotFound("InvalidAssociationID.NotFound", id))
			}
		} else if a, err = findAddress(ctx, tx, k, "", k.str("PublicIp")); err != nil {
			return err
		}
		if err := disassociate(ctx, tx, a); err != nil {
			return err
		}
		return c.notifyInstancesInTx(ctx, tx, a.InstanceID)
	})
	if err != nil {
		return nil, err
	}
	return ok()
}

// notifyInstancesInTx wakes the nodes of instances whose public address
// changed when tx commits (notifyInTx): their agents move the NAT rules at
// once.
func (c *Cloud) notifyInstancesInTx(ctx context.Context, tx *store.Tx, ids ...string) error {
	var nodes []string
	for _, id := range ids {
		if id == "" {
			continue
		}
		var node string
		err := tx.QueryRow(ctx, `SELECT node_id FROM instances WHERE id = ?`, id).Scan(&node)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("node of instance %s: %w", id, err)
		}
		nodes = append(nodes, node)
	}
	return c.notifyInTx(ctx, tx, nodes...)
}

// Address is one item of DescribeAddresses.
type Address struct {
	PublicIP      string `xml:"publicIp"`
	AllocationID  string `xml:"allocationId"`
	Domain        string `xml:"domain"`
	InstanceID    string `xml:"instanceId,omitempty"`
	AssociationID string `xml:"associationId,omitempty"`
	PrivateIP     string `xml:"privateIpAddress,omitempty"`
	Tags          []Tag  `xml:"tagSet>item"`
	owner         string
}

// DescribeAddressesResponse is DescribeAddresses' answer.
type DescribeAddressesResponse struct {
	ec2.ResponseMeta
	Addresses []Address `xml:"addressesSet>item"`
}

// describeAddressesParams are the parameters DescribeAddresses accepts.
var describeAddressesParams = []string{
	"PublicIp.N", "AllocationId.N", "Filter.N.Name", "Filter.N.Value.N",
}

func (c *Cloud) describeAddresses(ctx context.Context, k *call) (any, error) {
	d := &describer[Address]{
		ids: []idParam[Address]{
			{name: "PublicIp", of: func(a Address) string { return a.PublicIP },
				notFound: func(ip string) error { return ec2.NotFound("InvalidAddress.NotFound", ip) }},
			{name: "AllocationId", of: func(a Address) string { return a.AllocationID },
				notFound: func(id string) error { return ec2.NotFound("InvalidAllocationID.NotFound", id) }},
		},
		filters: []string{"allocation-id", "association-id", "domain", "instance-id", "public-ip", "private-ip-address"},
		field: func(a Address, n string) []string {
			switch n {
			case "allocation-id":
				return []string{a.AllocationID}
			case "association-id":
				return []string{a.AssociationID}
			case "domain":
				return []string{a.Domain}
			case "instance-id":
				return []string{a.InstanceID}
			case "public-ip":
				return []string{a.PublicIP}
			}
			return []string{a.PrivateIP}
		},
		tags: func(a Address) []Tag { return a.Tags },
		key:  func(a Address) string { return a.PublicIP },
		load: func(ctx context.Context, k *call, _ map[string][]string) ([]Address, error) {
			return c.loadAddresses(ctx, k)
		},
	}
	out, _, err := d.run(ctx, k)
	if err != nil {
		return nil, err
	}
	return &DescribeAddressesResponse{Addresses: out}, nil
}

// loadAddresses loads the addresses the caller holds (all for the admin).
func (c *Cloud) loadAddresses(ctx context.Context, k *call) ([]Address, error) {
	tags, err := loadTags(ctx, c.db, k, "elastic-ip")
	if err != nil {
		return nil, err
	}
	// Addresses given at launch are the instance's, not allocations.
	where, args := ` WHERE a.auto = 0 AND a.account_id = ?`, []any{k.account()}
	if k.admin() {
		where, args = ` WHERE a.auto = 0`, nil
	}
	rows, err := c.db.Query(ctx, `SELECT a.public_ip, a.allocation_id, a.account_id, a.instance_id, a.association_id,
		COALESCE(i.private_ip, '') FROM addresses a LEFT JOIN instances i ON i.id = a.instance_id`+where, args...)
	if err != nil {
		return nil, fmt.Errorf("describe addresses: %w", err)
	}
	defer rows.Close()
	var out []Address
	for rows.Next() {
		a := Address{Domain: "standard"}
		if err := rows.Scan(&a.PublicIP, &a.AllocationID, &a.owner, &a.InstanceID, &a.AssociationID, &a.PrivateIP); err != nil {
			return nil, err
		}
		a.Tags = tagSet(tags[a.AllocationID])
		out = append(out, a)
	}
	return out, rows.Err()
}

// addressEvent is the usage record's entry for an address held or given
// back.
func addressEvent(at time.Time, ip, state, account, user string) usage.Event {
	return usage.Event{At: at, Kind: usage.KindAddress, Resource: ip, State: state, Account: account, User: user}
}

// recordAutoRelease records the release of the launch-time addresses
// (auto) matching cond, before they are deleted.
func recordAutoRelease(ctx context.Context, tx *store.Tx, at time.Time, cond, arg string) error {
	rows, err := tx.Query(ctx, `SELECT public_ip, account_id FROM addresses WHERE auto = 1 AND `+cond, arg)
	if err != nil {
		return err
	}
	var evs []usage.Event
	for rows.Next() {
		var ip, account string
		if err := rows.Scan(&ip, &account); err != nil {
			rows.Close()
			return err
		}
		evs = append(evs, addressEvent(at, ip, usage.StateReleased, account, ""))
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	return usage.Record(ctx, tx, evs...)
}
