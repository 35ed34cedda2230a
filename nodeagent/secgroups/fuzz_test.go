package secgroups

import (
	"net/netip"
	"strings"
	"testing"

	"ironbark/internal/nodeapi"
)

// FuzzBuild feeds Build rules as the node API could carry them: it must
// refuse or build, never panic, and what it builds must name only the
// chains and sets it made.
func FuzzBuild(f *testing.F) {
	f.Add("tcp", 22, 22, "10.0.0.0/8", "")
	f.Add("udp", 53, 54, "", "sg-peer")
	f.Add("icmp", 8, -1, "0.0.0.0/0", "")
	f.Add("-1", -1, -1, "192.0.2.7/32", "")
	f.Add("47", 0, 0, "10.1.0.0/16", "")
	f.Add("tcp", 90, 80, "10.0.0.0/33", "sg x")
	f.Fuzz(func(t *testing.T, proto string, from, to int, cidr, group string) {
		r := nodeapi.SecurityGroupRule{Protocol: proto, From: from, To: to, CIDR: cidr, Group: group}
		g := nodeapi.SecurityGroup{ID: "sg-x", Ingress: []nodeapi.SecurityGroupRule{r}, Egress: []nodeapi.SecurityGroupRule{r}}
		rs, err := Build([]Instance{{ID: "i-1", IP: netip.MustParseAddr("10.0.0.10"), Groups: []string{"sg-x"}}},
			[]nodeapi.SecurityGroup{g, {ID: group, Members: []string{cidr, "10.0.0.11"}}})
		if err != nil {
			return
		}
		for name, rules := range rs.Chains {
			for _, r := range rules {
				if _, ok := rs.Chains[r.target]; r.verdict == jump && !ok {
					t.Fatalf("chain %s jumps to %q, which is not made", name, r.target)
				}
				if _, ok := rs.Sets[r.peerSet]; r.peerSet != "" && !ok {
					t.Fatalf("chain %s names set %q, which is not made", name, r.peerSet)
				}
			}
		}
		if s := Script("br0", rs); !strings.Contains(s, "chain gin_sg-x") {
			t.Fatalf("script without the group's chain:\n%s", s)
		}
	})
}
