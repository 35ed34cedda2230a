package main

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"ironbark/internal/lab"
	"ironbark/internal/nodeapi"
	"ironbark/nodeagent/secgroups"
)

// state is a node's instances and groups: o.rules rules over groups of
// 40 (39 ingress, of every kind, one egress), each instance in two groups,
// every tenth rule naming a peer group.
func state(o options) ([]secgroups.Instance, []nodeapi.SecurityGroup) {
	const per = 40
	ng := max(o.rules/per, 2)
	ids := make([]string, ng)
	for g := range ids {
		ids[g] = fmt.Sprintf("sg-%017x", g+1)
	}
	var insts []secgroups.Instance
	members := map[string][]string{}
	base := netip.MustParseAddr("10.200.0.10")
	for i := range o.instances {
		ip := base
		for range i {
			ip = ip.Next()
		}
		gs := []string{ids[i%ng], ids[(i+7)%ng]}
		insts = append(insts, secgroups.Instance{ID: fmt.Sprintf("i-%017x", i+1), IP: ip, Groups: gs})
		for _, g := range gs {
			members[g] = append(members[g], ip.String())
		}
	}
	groups := make([]nodeapi.SecurityGroup, ng)
	for g := range groups {
		sg := nodeapi.SecurityGroup{ID: ids[g], Members: members[ids[g]],
			Egress: []nodeapi.SecurityGroupRule{{Protocol: "-1", From: -1, To: -1, CIDR: "0.0.0.0/0"}}}
		for r := range per - 1 {
			rule := nodeapi.SecurityGroupRule{CIDR: fmt.Sprintf("10.%d.%d.0/24", g%250, r)}
			switch r % 4 {
			case 0:
				rule.Protocol, rule.From, rule.To = "tcp", 1000+r, 1000+r
			case 1:
				rule.Protocol, rule.From, rule.To = "tcp", 2000+10*r, 2009+10*r
			case 2:
				rule.Protocol, rule.From, rule.To = "udp", 3000+r, 3000+r
			case 3:
				rule.Protocol, rule.From, rule.To = "icmp", 8, -1
			}
			if r%10 == 9 {
				rule.CIDR, rule.Group = "", ids[(g+1)%ng]
			}
			sg.Ingress = append(sg.Ingress, rule)
		}
		groups[g] = sg
	}
	return insts, groups
}

func count(groups []nodeapi.SecurityGroup) int {
	n := 0
	for _, g := range groups {
		n += len(g.Ingress) + len(g.Egress)
	}
	return n
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// benchApply times one rule change through the firewall against `nft -f`
// of the full ruleset, in a fresh namespace.
func benchApply(e *env, o options) error {
	insts, groups := state(o)
	ns := lab.NewNetNS(e)
	const bridge = "ibrbench"
	var fw *secgroups.Firewall
	if err := ns.Do(func() (err error) { fw, err = secgroups.New(bridge, 0); return err }); err != nil {
		return err
	}
	defer fw.Release()
	apply := func(groups []nodeapi.SecurityGroup) (time.Duration, error) {
		start := time.Now()
		rs, err := secgroups.Build(insts, groups)
		if err == nil {
			_, err = fw.Apply(rs)
		}
		return time.Since(start), err
	}
	full := make([]time.Duration, 0, o.loads)
	for range o.loads {
		// A fresh Firewall rebuilds the table, as a restarted agent does.
		if err := ns.Do(func() (err error) { fw.Release(); fw, err = secgroups.New(bridge, 0); return err }); err != nil {
			return err
		}
		d, err := apply(groups)
		if err != nil {
			return err
		}
		full = append(full, d)
	}
	// One rule added to and removed from a group, alternately.
	extra := nodeapi.SecurityGroupRule{Protocol: "tcp", From: 9999, To: 9999, CIDR: "192.0.2.0/24"}
	changed := slices.Clone(groups)
	g := min(3, len(groups)-1) // a small -rules makes fewer groups
	changed[g].Ingress = append(slices.Clone(groups[g].Ingress), extra)
	var change []time.Duration
	for i := range o.changes {
		gs := changed
		if i%2 == 1 {
			gs = groups
		}
		d, err := apply(gs)
		if err != nil {
			return err
		}
		change = append(change, d)
	}
	rs, err := secgroups.Build(insts, groups)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "netbench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	script := filepath.Join(dir, "full.nft")
	if err := os.WriteFile(script, []byte(secgroups.Script(bridge, rs)), 0o644); err != nil {
		return err
	}
	// The same one-rule change as the standard tool would make it: the
	// group's chain flushed and refilled.
	rsc, err := secgroups.Build(insts, changed)
	if err != nil {
		return err
	}
	one := filepath.Join(dir, "change.nft")
	if err := os.WriteFile(one, []byte(chainScript(secgroups.Script(bridge, rsc), bridge, "gin_"+groups[g].ID)), 0o644); err != nil {
		return err
	}
	nft := func(file string) (time.Duration, error) {
		start := time.Now()
		out, err := ns.Command(context.Background(), "nft", "-f", file).CombinedOutput()
		if err != nil {
			return 0, fmt.Errorf("nft -f %s: %v: %s", file, err, out)
		}
		return time.Since(start), nil
	}
	var ref, refOne []time.Duration
	for range o.loads {
		d, err := nft(script)
		if err != nil {
			return err
		}
		ref = append(ref, d)
	}
	for range o.loads {
		d, err := nft(one)
		if err != nil {
			return err
		}
		refOne = append(refOne, d)
	}
	fmt.Printf("apply: %d instances, %d rules (%d groups), nft %s; median of %d changes and %d loads\n",
		len(insts), count(groups), len(groups), nftVersion(), o.changes, o.loads)
	fmt.Printf("apply %-28s ironbark %8.2f ms  nft -f full ruleset %8.2f ms  ratio %s (goal <= 0.2x)\n",
		"one rule changed", ms(median(change)), ms(median(ref)), ratio(ms(median(change)), ms(median(ref))))
	fmt.Printf("apply %-28s ironbark %8.2f ms  nft -f full ruleset %8.2f ms  ratio %s\n",
		"whole table (agent restart)", ms(median(full)), ms(median(ref)), ratio(ms(median(full)), ms(median(ref))))
	fmt.Printf("apply %-28s ironbark %8.2f ms  nft -f that chain   %8.2f ms  ratio %s\n",
		"one rule changed", ms(median(change)), ms(median(refOne)), ratio(ms(median(change)), ms(median(refOne))))
	return nil
}

// chainScript is the part of a full script that refills one chain, as a
// change: flush it, then its rules.
func chainScript(full, bridge, chain string) string {
	table := secgroups.TableName(bridge)
	var b strings.Builder
	fmt.Fprintf(&b, "flush chain inet %s %s\n", table, chain)
	in := false
	for _, l := range strings.Split(full, "\n") {
		l = strings.TrimSpace(l)
		switch {
		case l == "chain "+chain+" {":
			in = true
		case in && l == "}":
			in = false
		case in && l != "":
			fmt.Fprintf(&b, "add rule inet %s %s %s\n", table, chain, l)
		}
	}
	return b.String()
}

func nftVersion() string {
	out, err := exec.Command("nft", "--version").Output()
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(out))
}
