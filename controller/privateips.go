package controller

import (
	"context"
	"database/sql"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"time"

	"ironbark/controller/ec2"
	"ironbark/internal/store"
)

// DefaultInstanceSubnet is the instances' private subnet when the config
// names none: the bridge subnet of scripts/run, whose .1 is the host. A /16
// holds 65,526 instances, so the default never caps a cloud far below the
// sizes the scale benchmarks run (a /24 stopped bench/ec2 at 245).
const DefaultInstanceSubnet = "10.88.0.0/16"

// firstInstanceHost is the host number private addresses start at; the
// ones below are left to the host side (bridge, gateway, services).
const firstInstanceHost = 10

// parseInstanceSubnet gives the pool of private addresses of an IPv4
// subnet: from its .10 up to the one before its broadcast address.
func parseInstanceSubnet(s string) (netip.Prefix, *addressPool, error) {
	pfx, err := netip.ParsePrefix(s)
	if err != nil || !pfx.Addr().Is4() || pfx.Bits() > 28 {
		return netip.Prefix{}, nil, fmt.Errorf("instance subnet %q: want an IPv4 CIDR of /28 or larger", s)
	}
	pfx = pfx.Masked()
	first := pfx.Addr()
	for range firstInstanceHost {
		first = first.Next()
	}
	return pfx, &addressPool{ranges: [][2]netip.Addr{{first, lastAddr(pfx).Prev()}}}, nil
}

// allocPrivateIP picks the lowest private address no live instance holds,
// inside the launch transaction; the unique index on live instances'
// addresses catches another controller picking the same one. from is
// where the search starts, moved past each pick: the instances of one
// launch take consecutive free addresses without rescanning those below
// (a scan from the bottom each time made a launch of k instances into a
// cloud of N cost k*N).
func (c *Cloud) allocPrivateIP(taken map[string]bool, z zoneNet, from *netip.Addr) (string, error) {
	ip, ok := z.pool.firstFrom(taken, *from)
	if !ok {
		return "", ec2.Errorf("InsufficientFreeAddressesInSubnet", "There are not enough free addresses in subnet '%s' to satisfy the requested number of instances (the operator can give the cluster a larger one: ironbark cluster set NAME --instance-subnet CIDR).", z.subnet.String())
	}
	taken[ip.String()] = true
	*from = ip.Next()
	return ip.String(), nil
}

// takenIPs is this controller's copy of the private addresses that live
// instances hold, for launches: read from the store at every launch it
// cost a scan of every live instance inside the placement lock, where
// launches queue (at 100,000 instances, most of a launch's time). The copy
// is only a guess of what is free, never trusted alone:
//   - addresses other controllers (or other paths) took since it was read
//     are missed: a launch checks the addresses it picked against the
//     store's index, under the placement lock, and rereads the whole set
//     when one is taken;
//   - addresses given back since are still marked taken (the next launch
//     would take a higher one): this controller forgets the copy when it
//     ends an instance, and every copy is reread after takenIPsTTL, so an
//     address another controller frees is reused within that.
//
// A launch that fails after picking forgets the copy too (its picks were
// never committed).
//
// The check against the index is skipped when the copy is exact: when the
// launch sequence (launch_seq, bumped by every launch anywhere) is still
// the one the copy was read at, with only this controller's launches since
// (as usageCache trusts its copy). With one controller that is every
// launch: a round trip less under the placement lock.
type takenIPs struct {
	mu   sync.Mutex
	set  map[string]bool // nil: read it at the next launch
	read time.Time
	// seq is the launch sequence set is exact at, when seqKnown.
	seq      int64
	seqKnown bool
	// low is, per subnet, where the search for a free address starts:
	// every address of the pool below it is in set (picks are lowest
	// first), so a launch does not walk the taken ones again.
	low map[netip.Prefix]netip.Addr
	// A read made outside the placement lock (warmTakenIPs) may miss the
	// picks of a launch that commits after its snapshot: pending are the
	// picks of the launches under way (a batch's, until it commits or
	// fails), and picked those made while the read runs (warming); the
	// read adds both. epoch counts the whole reads installed, so a read that a
	// newer one overtook is dropped.
	pending, picked []string
	epoch           uint64
	warming         bool
}

// install makes set, read whole at launch sequence seq, the copy.
func (t *takenIPs) install(set map[string]bool, seq int64) {
	t.set, t.read, t.low = set, time.Now(), map[netip.Prefix]netip.Addr{}
	t.seq, t.seqKnown = seq, true
	t.picked = nil
	t.epoch++
}

const takenIPsTTL = 30 * time.Second

// forget drops the copy: the next launch reads the set again.
func (t *takenIPs) forget() {
	t.mu.Lock()
	// pending stays: the launch under way may still commit its picks.
	t.set, t.seqKnown = nil, false
	t.mu.Unlock()
}

// failed drops the copy and the picks of the launches under way: their
// transaction rolled back.
func (t *takenIPs) failed() {
	t.mu.Lock()
	t.set, t.seqKnown, t.pending = nil, false, nil
	t.mu.Unlock()
}

// launched says a launch of this controller that picked from the copy
// committed as launch seq: the copy stays exact if it was at the one
// before.
func (t *takenIPs) launched(seq int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.pending = nil // committed: a read that starts now sees them
	if t.seqKnown && t.seq == seq-1 {
		t.seq = seq
	} else {
		t.seqKnown = false
	}
}

// allocPrivateIPs picks n free private addresses in the zone's subnet,
// the lowest free first, inside a launch transaction that holds the
// placement lock and read the launch sequence seq under it; they count as
// taken from now on.
func (c *Cloud) allocPrivateIPs(ctx context.Context, tx *store.Tx, zn zoneNet, n int, seq int64) ([]string, error) {
	t := &c.takenIPs
	t.mu.Lock()
	defer t.mu.Unlock()
	for reread := false; ; reread = true {
		if t.set == nil || reread || time.Since(t.read) >= takenIPsTTL {
			set, err := livePrivateIPs(ctx, tx)
			if err != nil {
				t.set = nil
				return nil, err
			}
			// The launches before this one in its batch picked
			// addresses the store does not hold yet.
			for _, ip := range t.pending {
				set[ip] = true
			}
			t.install(set, seq)
		}
		picked := make([]string, 0, n)
		from := t.low[zn.subnet] // the zero Addr: the pool's start
		for range n {
			ip, err := c.allocPrivateIP(t.set, zn, &from)
			if err != nil {
				for _, p := range picked {
					delete(t.set, p)
				}
				delete(t.low, zn.subnet)
				return nil, err
			}
			picked = append(picked, ip)
		}
		t.low[zn.subnet] = from
		if t.warming {
			t.picked = append(t.picked, picked...)
		}
		if reread || (t.seqKnown && t.seq == seq) {
			// Read under the placement lock, in this transaction, or
			// no launch but this controller's since: exact.
			t.pending = append(t.pending, picked...)
			return picked, nil
		}
		held, err := heldPrivateIPs(ctx, tx, picked)
		if err != nil {
			t.set = nil
			return nil, err
		}
		if !held {
			t.pending = append(t.pending, picked...)
			return picked, nil
		}
	}
}

// heldPrivateIPs reports whether a live instance holds any of ips.
func heldPrivateIPs(ctx context.Context, q store.Querier, ips []string) (bool, error) {
	for len(ips) > 0 {
		k := min(len(ips), 500)
		var n int
		if err := q.QueryRow(ctx, `SELECT COUNT(*) FROM instances WHERE state <> 'terminated' AND private_ip <> ''
			AND private_ip IN (?`+strings.Repeat(`, ?`, k-1)+`)`, anySlice(ips[:k])...).Scan(&n); err != nil {
			return false, fmt.Errorf("private addresses in use: %w", err)
		}
		if n > 0 {
			return true, nil
		}
		ips = ips[k:]
	}
	return false, nil
}

// livePrivateIPsAt is livePrivateIPs with the launch sequence it is
// exact at: one statement, one snapshot, no lock.
func livePrivateIPsAt(ctx context.Context, q store.Querier) (map[string]bool, int64, error) {
	rows, err := q.Query(ctx, `SELECT s.seq, i.private_ip FROM launch_seq s
		LEFT JOIN instances i ON i.state <> 'terminated' AND i.private_ip <> ''`)
	if err != nil {
		return nil, 0, fmt.Errorf("private addresses in use: %w", err)
	}
	defer rows.Close()
	taken := map[string]bool{}
	var seq int64
	for rows.Next() {
		var ip sql.NullString
		if err := rows.Scan(&seq, &ip); err != nil {
			return nil, 0, err
		}
		if ip.Valid {
			taken[ip.String] = true
		}
	}
	return taken, seq, rows.Err()
}

// livePrivateIPs is the set of private addresses held by instances not
// yet terminated.
func livePrivateIPs(ctx context.Context, q store.Querier) (map[string]bool, error) {
	rows, err := q.Query(ctx, `SELECT private_ip FROM instances WHERE state <> 'terminated' AND private_ip <> ''`)
	if err != nil {
		return nil, fmt.Errorf("private addresses in use: %w", err)
	}
	defer rows.Close()
	taken := map[string]bool{}
	for rows.Next() {
		var ip string
		if err := rows.Scan(&ip); err != nil {
			return nil, err
		}
		taken[ip] = true
	}
	return taken, rows.Err()
}

// PrivateDNSName is an instance's private host name, as EC2 spells it.
func PrivateDNSName(ip string) string {
	return "ip-" + strings.ReplaceAll(ip, ".", "-") + ".ironbark.internal"
}
