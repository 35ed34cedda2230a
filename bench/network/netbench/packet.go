package main

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"time"

	"ironbark/internal/lab"
	"ironbark/internal/nodeapi"
	"ironbark/nodeagent/secgroups"
)

// benchPackets measures UDP packets per second from one instance to
// another across the node's bridge, with the full ruleset (the receiver's
// permitting rule last in its second group's chain; unanswered UDP is
// never "established", so every packet walks the chains) and with no
// ruleset, alternating.
func benchPackets(e *env, o options) error {
	insts, groups := state(o)
	n := lab.NewLabNet(e, "10.200.0.1/16")
	a, b := insts[0], insts[1]
	// b's second group lets a in on udp 5001, after all its other rules.
	for i := range groups {
		if groups[i].ID == b.Groups[1] {
			groups[i].Ingress = append(groups[i].Ingress, nodeapi.SecurityGroupRule{Protocol: "udp", From: 5001, To: 5001,
				CIDR: a.IP.String() + "/32"})
		}
	}
	guest := func(ip netip.Addr) *lab.NetNS {
		ns := lab.NewNetNS(e)
		end := n.NS.Link(e, n.Bridge, ns)
		ns.AddAddr(e, end, netip.PrefixFrom(ip, n.Addr.Bits()))
		return ns
	}
	nsA, nsB := guest(a.IP), guest(b.IP)
	var fw *secgroups.Firewall
	if err := n.NS.Do(func() (err error) { fw, err = secgroups.New(n.Bridge, 0); return err }); err != nil {
		return err
	}
	defer fw.Release()
	rs, err := secgroups.Build(insts, groups)
	if err != nil {
		return err
	}
	var rx net.PacketConn
	if err := nsB.Do(func() (err error) { rx, err = net.ListenPacket("udp4", b.IP.String()+":5001"); return err }); err != nil {
		return err
	}
	defer rx.Close()
	var conn net.Conn
	if err := nsA.Do(func() (err error) { conn, err = net.Dial("udp4", b.IP.String()+":5001"); return err }); err != nil {
		return err
	}
	defer conn.Close()
	// run is the sender's rate: each send crosses veth, bridge and the
	// filter in the sender's own context, up to the receiver's socket
	// (which overflows: nobody reads during the run, so the receiver's
	// speed does not count). Then one packet must still arrive: the
	// ruleset lets the flow through rather than dropping it early.
	run := func(answered bool) (float64, error) {
		buf := make([]byte, 2048)
		drain := func() {
			for {
				_ = rx.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
				if _, _, err := rx.ReadFrom(buf); err != nil {
					return
				}
			}
		}
		msg := make([]byte, 64)
		for range 16 { // ARP and the flow's first packets
			_, _ = conn.Write(msg)
		}
		if answered {
			// One answer makes the flow established for conntrack.
			_ = rx.SetReadDeadline(time.Now().Add(2 * time.Second))
			_, from, err := rx.ReadFrom(buf)
			if err != nil {
				return 0, fmt.Errorf("the flow's first packet: %w", err)
			}
			if _, err := rx.WriteTo(msg, from); err != nil {
				return 0, err
			}
		}
		drain()
		sent := 0
		start := time.Now()
		end := start.Add(time.Duration(o.seconds) * time.Second)
		for time.Now().Before(end) {
			for range 64 {
				if _, err := conn.Write(msg); err == nil {
					sent++
				}
			}
		}
		rate := float64(sent) / time.Since(start).Seconds()
		drain()
		_, _ = conn.Write(msg)
		_ = rx.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, _, err := rx.ReadFrom(buf); err != nil {
			return 0, fmt.Errorf("after the run no packet reaches the receiver: %w", err)
		}
		return rate, nil
	}
	fmt.Printf("packets: 64-byte UDP from one instance to another across the bridge, sender's rate, median of %d pairs of %d s runs (ruleset off, on)\n",
		o.rounds, o.seconds)
	for _, answered := range []bool{true, false} {
		// A new 5-tuple per comparison, so conntrack starts fresh.
		if err := nsA.Do(func() (err error) { conn.Close(); conn, err = net.Dial("udp4", b.IP.String()+":5001"); return err }); err != nil {
			return err
		}
		// Pairs of runs, the ruleset off then on: the median of the
		// pairs' ratios holds up better than best-of on a loaded machine.
		var with, without, ratios []float64
		for range o.rounds {
			if err := fw.Close(); err != nil {
				return err
			}
			off, err := run(answered)
			if err != nil {
				return fmt.Errorf("no ruleset: %w", err)
			}
			if err := n.NS.Do(func() (err error) { fw, err = secgroups.New(n.Bridge, 0); return err }); err != nil {
				return err
			}
			if _, err := fw.Apply(rs); err != nil {
				return err
			}
			on, err := run(answered)
			if err != nil {
				return fmt.Errorf("with the ruleset: %w", err)
			}
			with, without, ratios = append(with, on), append(without, off), append(ratios, on/off)
		}
		what, goal := "established flow", " (goal >= 0.9x)"
		if !answered {
			what, goal = "unanswered (every packet walks the chains)", ""
		}
		fmt.Printf("packets %-42s ironbark %9.0f pkt/s  no ruleset %9.0f pkt/s  ratio %.2fx%s\n", what, medianF(with), medianF(without), medianF(ratios), goal)
	}
	return nil
}

func medianF(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}
