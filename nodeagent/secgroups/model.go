package secgroups

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"ironbark/internal/nodeapi"
)

// MetadataAddr is the EC2 metadata service's address, which every
// instance may reach on port 80.
var MetadataAddr = netip.MustParseAddr("169.254.169.254")

// Instance is one instance as the firewall sees it.
type Instance struct {
	ID     string
	IP     netip.Addr // its private IPv4 address
	Groups []string   // its security group IDs
	// NetworkDHCP: the instance's DHCP server is on the cluster network
	// (SYSTEM mode), not the node, so its answers arrive bridged from
	// another host and are let in (udp port 68) like the node's.
	NetworkDHCP bool
}

// Instances picks what the firewall needs from the desired instances:
// those not being terminated that have a private address.
func Instances(specs []nodeapi.InstanceSpec) []Instance {
	var out []Instance
	for _, s := range specs {
		ip, err := netip.ParseAddr(s.PrivateIP)
		if s.Desired == nodeapi.StateTerminated || err != nil || !ip.Is4() {
			continue
		}
		out = append(out, Instance{ID: s.InstanceID, IP: ip, Groups: s.SecurityGroups,
			NetworkDHCP: s.Network != nil && s.Network.Mode == nodeapi.ModeSystem})
	}
	return out
}

// verdict kinds of a rule.
const (
	accept = "accept"
	drop   = "drop"
	jump   = "jump"
)

// rule is one nftables rule of the model. Comparable: chains are compared
// rule by rule to find what changed.
type rule struct {
	est     bool         // ct state established,related
	proto   int          // IP protocol; -1 any
	peer    netip.Prefix // the peer's addresses; invalid: any
	peerSet string       // or the peer group's member set
	dst     bool         // the peer is the destination (egress rules)
	from    int          // destination port range (tcp, udp); -1 none
	to      int
	itype   int // icmp type; -1 any
	icode   int // icmp code; -1 any
	verdict string
	target  string // jump's chain
}

func anyRule() rule { return rule{proto: -1, from: -1, to: -1, itype: -1, icode: -1} }

// Ruleset is the desired content of the table.
type Ruleset struct {
	// Chains are the regular chains (per instance and per group) by name.
	Chains map[string][]rule
	// Sets are the peer groups' member sets by name.
	Sets map[string][]netip.Addr
	// In and Out are the verdict maps' contents: an instance's address
	// to its ingress and egress chain.
	In, Out map[netip.Addr]string
	// Bridges are the node's instance bridges besides the firewall's own
	// (MANAGED mode's bridge per VLAN): the base chains send their
	// traffic through the same instance chains. Build leaves it empty.
	Bridges []string
}

// Chain and set names.
func inChain(id string) string   { return "in_" + id }
func outChain(id string) string  { return "out_" + id }
func groupIn(id string) string   { return "gin_" + id }
func groupOut(id string) string  { return "gout_" + id }
func memberSet(id string) string { return "m_" + id }

func validName(id string) bool {
	// Controller IDs (i-..., sg-...): letters, digits, '-', '_', '.',
	// which nft's syntax takes as names too.
	if id == "" || len(id) > 200 {
		return false
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// Build makes the ruleset for the instances and the groups the controller
// sent. An instance in a group the controller did not describe gets that
// group's chains empty: it is denied, not opened. Names that could not be
// chain names, or two instances at one address (never so from the
// controller), are refused: the table stays as it was.
func Build(insts []Instance, groups []nodeapi.SecurityGroup) (*Ruleset, error) {
	rs := &Ruleset{Chains: map[string][]rule{}, Sets: map[string][]netip.Addr{},
		In: map[netip.Addr]string{}, Out: map[netip.Addr]string{}}
	byID := map[string]nodeapi.SecurityGroup{}
	for _, g := range groups {
		byID[g.ID] = g
	}
	used := map[string]bool{}
	for _, in := range insts {
		if !validName(in.ID) || !in.IP.Is4() {
			return nil, fmt.Errorf("instance %q at %s: not an instance ID and IPv4 address", in.ID, in.IP)
		}
		if _, dup := rs.In[in.IP]; dup {
			return nil, fmt.Errorf("instance %s: address %s is another instance's", in.ID, in.IP)
		}
		est := anyRule()
		est.est, est.verdict = true, accept
		ing := []rule{est}
		if in.NetworkDHCP {
			// The answers of the network's DHCP server: not
			// established (they answer a broadcast from 0.0.0.0).
			c := anyRule()
			c.proto, c.from, c.to, c.verdict = 17, 68, 68, accept
			ing = append(ing, c)
		}
		eg := []rule{est}
		md := anyRule()
		md.proto, md.peer, md.dst, md.from, md.to, md.verdict = 6, netip.PrefixFrom(MetadataAddr, 32), true, 80, 80, accept
		dhcp := anyRule()
		dhcp.proto, dhcp.from, dhcp.to, dhcp.verdict = 17, 67, 67, accept
		eg = append(eg, md, dhcp)
		gs := slices.Clone(in.Groups)
		slices.Sort(gs)
		for _, g := range slices.Compact(gs) {
			if !validName(g) {
				return nil, fmt.Errorf("instance %s: group %q is not a group ID", in.ID, g)
			}
			used[g] = true
			j := anyRule()
			j.verdict, j.target = jump, groupIn(g)
			ing = append(ing, j)
			j.target = groupOut(g)
			eg = append(eg, j)
		}
		d := anyRule()
		d.verdict = drop
		rs.Chains[inChain(in.ID)] = append(ing, d)
		rs.Chains[outChain(in.ID)] = append(eg, d)
		rs.In[in.IP], rs.Out[in.IP] = inChain(in.ID), outChain(in.ID)
	}
	for g := range used {
		sg := byID[g]
		in, err := groupRules(rs, byID, sg.Ingress, false)
		if err != nil {
			return nil, fmt.Errorf("group %s: %w", g, err)
		}
		out, err := groupRules(rs, byID, sg.Egress, true)
		if err != nil {
			return nil, fmt.Errorf("group %s: %w", g, err)
		}
		rs.dispatch(groupIn(g), in)
		rs.dispatch(groupOut(g), out)
	}
	return rs, nil
}

// protoChain is a protocol whose rules a group's chain hands to a chain
// of their own (NAME_tcp, ...), so a packet walks only its protocol's
// rules: one jump rule per protocol instead of every rule of the group.
type protoChain struct {
	num  int
	name string
}

var byProto = []protoChain{{6, "tcp"}, {17, "udp"}, {1, "icmp"}}

// dispatch makes the group chain name: its rules for every protocol (and
// others than byProto's), then a jump per protocol to the chain of that
// protocol's rules. All rules accept, so their order decides nothing.
func (rs *Ruleset) dispatch(name string, rules []rule) {
	main := []rule{}
	sub := map[int][]rule{}
	for _, r := range rules {
		if slices.ContainsFunc(byProto, func(p protoChain) bool { return p.num == r.proto }) {
			sub[r.proto] = append(sub[r.proto], r)
		} else {
			main = append(main, r)
		}
	}
	for _, p := range byProto {
		if len(sub[p.num]) == 0 {
			continue
		}
		rs.Chains[name+"_"+p.name] = sub[p.num]
		j := anyRule()
		j.proto, j.verdict, j.target = p.num, jump, name+"_"+p.name
		main = append(main, j)
	}
	rs.Chains[name] = main
}

// groupRules turns a group's permissions into accepting rules, making the
// member sets of the peer groups they name.
func groupRules(rs *Ruleset, byID map[string]nodeapi.SecurityGroup, perms []nodeapi.SecurityGroupRule, egress bool) ([]rule, error) {
	rules := []rule{}
	for _, p := range perms {
		r := anyRule()
		r.dst, r.verdict = egress, accept
		switch {
		case p.Group != "":
			if !validName(p.Group) {
				return nil, fmt.Errorf("peer group %q is not a group ID", p.Group)
			}
			r.peerSet = memberSet(p.Group)
			if _, ok := rs.Sets[r.peerSet]; !ok {
				rs.Sets[r.peerSet] = members(byID[p.Group].Members)
			}
		case p.CIDR != "":
			pfx, err := netip.ParsePrefix(p.CIDR)
			if err != nil || !pfx.Addr().Is4() {
				return nil, fmt.Errorf("rule CIDR %q: not an IPv4 prefix", p.CIDR)
			}
			if pfx.Bits() > 0 {
				r.peer = pfx.Masked()
			}
		default:
			return nil, fmt.Errorf("rule %s %d-%d names no peer", p.Protocol, p.From, p.To)
		}
		switch p.Protocol {
		case "-1", "all":
		case "tcp", "udp":
			r.proto = 6
			if p.Protocol == "udp" {
				r.proto = 17
			}
			if p.From < 0 || p.To > 65535 || p.From > p.To {
				return nil, fmt.Errorf("rule port range %d-%d", p.From, p.To)
			}
			if p.From > 0 || p.To < 65535 {
				r.from, r.to = p.From, p.To
			}
		case "icmp":
			r.proto = 1
			if p.From > 255 || p.To > 255 {
				return nil, fmt.Errorf("rule icmp type %d code %d", p.From, p.To)
			}
			r.itype = max(p.From, -1)
			if r.itype >= 0 {
				r.icode = max(p.To, -1)
			}
		default:
			n, err := strconv.Atoi(p.Protocol)
			if err != nil || n < 0 || n > 255 {
				return nil, fmt.Errorf("rule protocol %q", p.Protocol)
			}
			r.proto = n
		}
		rules = append(rules, r)
	}
	return rules, nil
}

// members parses and sorts member addresses (IPv4 only; others are not
// instances' private addresses).
func members(ips []string) []netip.Addr {
	out := []netip.Addr{}
	for _, s := range ips {
		if a, err := netip.ParseAddr(s); err == nil && a.Is4() {
			out = append(out, a)
		}
	}
	slices.SortFunc(out, func(a, b netip.Addr) int { return a.Compare(b) })
	return slices.Compact(out)
}

// structure is what forces a full rebuild when it changes: the chains,
// the sets and the verdict maps (instances or groups came or went).
func (rs *Ruleset) structure() string {
	var b strings.Builder
	for _, n := range sortedKeys(rs.Chains) {
		b.WriteString("c " + n + "\n")
	}
	for _, n := range sortedKeys(rs.Sets) {
		b.WriteString("s " + n + "\n")
	}
	for _, m := range []map[netip.Addr]string{rs.In, rs.Out} {
		for _, a := range sortedAddrs(m) {
			b.WriteString(a.String() + " " + m[a] + "\n")
		}
		b.WriteString("-\n")
	}
	for _, n := range rs.Bridges {
		b.WriteString("b " + n + "\n")
	}
	return b.String()
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func sortedAddrs(m map[netip.Addr]string) []netip.Addr {
	out := make([]netip.Addr, 0, len(m))
	for a := range m {
		out = append(out, a)
	}
	slices.SortFunc(out, func(a, b netip.Addr) int { return a.Compare(b) })
	return out
}

// bridges is the firewall's own bridge, then rs.Bridges (once each).
func (rs *Ruleset) bridges(own string) []string {
	out := []string{own}
	for _, b := range rs.Bridges {
		if !slices.Contains(out, b) {
			out = append(out, b)
		}
	}
	return out
}
