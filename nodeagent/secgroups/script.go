package secgroups

import (
	"fmt"
	"net/netip"
	"strings"
)

// Script is rs in nft's syntax: a file for `nft -f` that replaces the
// table with the same ruleset Apply programs (the benchmark loads it to
// compare with the standard tool).
func Script(bridge string, rs *Ruleset) string {
	var b strings.Builder
	t := TableName(bridge)
	fmt.Fprintf(&b, "table inet %s\ndelete table inet %s\ntable inet %s {\n", t, t, t)
	for _, n := range sortedKeys(rs.Sets) {
		fmt.Fprintf(&b, "\tset %s {\n\t\ttype ipv4_addr\n", n)
		if as := rs.Sets[n]; len(as) > 0 {
			fmt.Fprintf(&b, "\t\telements = { %s }\n", joinAddrs(as))
		}
		b.WriteString("\t}\n")
	}
	for _, n := range sortedKeys(rs.Chains) {
		fmt.Fprintf(&b, "\tchain %s {\n", n)
		for _, r := range rs.Chains[n] {
			fmt.Fprintf(&b, "\t\t%s\n", r.text())
		}
		b.WriteString("\t}\n")
	}
	for _, m := range []struct {
		name string
		of   map[netip.Addr]string
	}{{inPorts, rs.In}, {outPorts, rs.Out}} {
		fmt.Fprintf(&b, "\tmap %s {\n\t\ttype ipv4_addr : verdict\n", m.name)
		var es []string
		for _, a := range sortedAddrs(m.of) {
			es = append(es, a.String()+" : jump "+m.of[a])
		}
		if len(es) > 0 {
			fmt.Fprintf(&b, "\t\telements = { %s }\n", strings.Join(es, ", "))
		}
		b.WriteString("\t}\n")
	}
	for _, c := range bases {
		fmt.Fprintf(&b, "\tchain %s {\n\t\ttype filter hook %s priority %d; policy accept;\n", c.name, c.hookName, c.prio)
		for _, br := range rs.bridges(bridge) {
			dev := fmt.Sprintf("iifname %q", br)
			if c.byDst {
				dev = fmt.Sprintf("oifname %q", br)
			}
			if c.dhcpOffr {
				fmt.Fprintf(&b, "\t\t%s udp sport 67 udp dport 68 accept\n", dev)
			}
			if c.byDst {
				fmt.Fprintf(&b, "\t\t%s ip daddr vmap @%s\n", dev, inPorts)
			} else {
				fmt.Fprintf(&b, "\t\t%s ip saddr vmap @%s\n", dev, outPorts)
			}
		}
		b.WriteString("\t}\n")
	}
	b.WriteString("}\n")
	return b.String()
}

func joinAddrs(as []netip.Addr) string {
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = a.String()
	}
	return strings.Join(s, ", ")
}

// text is the rule in nft's syntax.
func (r rule) text() string {
	var p []string
	if r.est {
		p = append(p, "ct state established,related")
	}
	dir := "saddr"
	if r.dst {
		dir = "daddr"
	}
	switch {
	case r.peerSet != "":
		p = append(p, "ip "+dir+" @"+r.peerSet)
	case r.peer.IsValid():
		p = append(p, "ip "+dir+" "+r.peer.String())
	}
	switch {
	case r.from >= 0 && (r.proto == 6 || r.proto == 17):
		name := map[int]string{6: "tcp", 17: "udp"}[r.proto]
		if r.from == r.to {
			p = append(p, fmt.Sprintf("%s dport %d", name, r.from))
		} else {
			p = append(p, fmt.Sprintf("%s dport %d-%d", name, r.from, r.to))
		}
	case r.itype >= 0:
		p = append(p, fmt.Sprintf("icmp type %d", r.itype))
		if r.icode >= 0 {
			p = append(p, fmt.Sprintf("icmp code %d", r.icode))
		}
	case r.proto >= 0:
		p = append(p, fmt.Sprintf("meta l4proto %d", r.proto))
	}
	switch r.verdict {
	case jump:
		p = append(p, "jump "+r.target)
	default:
		p = append(p, r.verdict)
	}
	return strings.Join(p, " ")
}
