package controller

import (
	"context"
	"fmt"
	"net/netip"
	"strings"

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
