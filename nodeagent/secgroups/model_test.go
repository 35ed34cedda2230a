package secgroups

import (
	"fmt"
	"net/netip"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"ironbark/internal/lab"
	"ironbark/internal/nodeapi"
)

func TestRuleText(t *testing.T) {
	for _, c := range []struct {
		rule   nodeapi.SecurityGroupRule
		egress bool
		want   string
	}{
		{nodeapi.SecurityGroupRule{Protocol: "-1", From: -1, To: -1, CIDR: "0.0.0.0/0"}, true, "accept"},
		{nodeapi.SecurityGroupRule{Protocol: "tcp", From: 22, To: 22, CIDR: "10.1.2.3/8"}, false, "ip saddr 10.0.0.0/8 tcp dport 22 accept"},
		{nodeapi.SecurityGroupRule{Protocol: "tcp", From: 0, To: 65535, CIDR: "10.0.0.5/32"}, false, "ip saddr 10.0.0.5/32 meta l4proto 6 accept"},
		{nodeapi.SecurityGroupRule{Protocol: "udp", From: 53, To: 54, Group: "sg-dns"}, true, "ip daddr @m_sg-dns udp dport 53-54 accept"},
		{nodeapi.SecurityGroupRule{Protocol: "icmp", From: -1, To: -1, CIDR: "0.0.0.0/0"}, false, "meta l4proto 1 accept"},
		{nodeapi.SecurityGroupRule{Protocol: "icmp", From: 3, To: 4, CIDR: "0.0.0.0/0"}, false, "icmp type 3 icmp code 4 accept"},
		{nodeapi.SecurityGroupRule{Protocol: "icmp", From: 8, To: -1, CIDR: "0.0.0.0/0"}, false, "icmp type 8 accept"},
		{nodeapi.SecurityGroupRule{Protocol: "47", From: -1, To: -1, CIDR: "0.0.0.0/0"}, false, "meta l4proto 47 accept"},
	} {
		g := nodeapi.SecurityGroup{ID: "sg-x"}
		if c.egress {
			g.Egress = []nodeapi.SecurityGroupRule{c.rule}
		} else {
			g.Ingress = []nodeapi.SecurityGroupRule{c.rule}
		}
		rs, err := Build([]Instance{{ID: "i-1", IP: netip.MustParseAddr("10.0.0.10"), Groups: []string{"sg-x"}}}, []nodeapi.SecurityGroup{g})
		if err != nil {
			t.Fatalf("%+v: %v", c.rule, err)
		}
		chain := groupIn("sg-x")
		if c.egress {
			chain = groupOut("sg-x")
		}
		got := rs.Chains[chain]
		// tcp, udp and icmp rules sit in the protocol's own chain.
		if len(got) == 1 && got[0].verdict == jump {
			if want := "meta l4proto " + strconv.Itoa(got[0].proto) + " jump " + chain + "_" + c.rule.Protocol; got[0].text() != want {
				t.Errorf("%+v: the group's chain says %q, want %q", c.rule, got[0].text(), want)
			}
			got = rs.Chains[got[0].target]
		}
		if len(got) != 1 || got[0].text() != c.want {
			t.Errorf("%+v: %v, want %q", c.rule, got, c.want)
		}
	}
}

func TestBuildRefuses(t *testing.T) {
	ip := netip.MustParseAddr("10.0.0.10")
	rule := func(r nodeapi.SecurityGroupRule) []nodeapi.SecurityGroup {
		return []nodeapi.SecurityGroup{{ID: "sg-x", Ingress: []nodeapi.SecurityGroupRule{r}}}
	}
	in := []Instance{{ID: "i-1", IP: ip, Groups: []string{"sg-x"}}}
	for _, c := range []struct {
		what   string
		insts  []Instance
		groups []nodeapi.SecurityGroup
	}{
		{"a bad CIDR", in, rule(nodeapi.SecurityGroupRule{Protocol: "tcp", From: 1, To: 2, CIDR: "10.0.0.300/8"})},
		{"an IPv6 CIDR", in, rule(nodeapi.SecurityGroupRule{Protocol: "tcp", From: 1, To: 2, CIDR: "::/0"})},
		{"ports out of order", in, rule(nodeapi.SecurityGroupRule{Protocol: "tcp", From: 90, To: 80, CIDR: "0.0.0.0/0"})},
		{"an icmp type past 255", in, rule(nodeapi.SecurityGroupRule{Protocol: "icmp", From: 256, To: -1, CIDR: "0.0.0.0/0"})},
		{"an unknown protocol", in, rule(nodeapi.SecurityGroupRule{Protocol: "sctpish", CIDR: "0.0.0.0/0"})},
		{"no peer", in, rule(nodeapi.SecurityGroupRule{Protocol: "-1"})},
		{"a peer that is no name", in, rule(nodeapi.SecurityGroupRule{Protocol: "-1", Group: "sg x"})},
		{"two instances at one address", []Instance{in[0], {ID: "i-2", IP: ip}}, nil},
		{"an instance ID that is no name", []Instance{{ID: "i;1", IP: ip}}, nil},
	} {
		if _, err := Build(c.insts, c.groups); err == nil {
			t.Errorf("%s: built", c.what)
		}
	}
}

// TestNetworkDHCP: a SYSTEM-mode instance takes its address from the
// cluster network's DHCP server, whose answers are new traffic from
// another host: its ingress chain lets them in (udp port 68) before its
// groups. A MANAGED instance's answers come from the node (the output
// hook's own rule), and nothing else may answer it.
func TestNetworkDHCP(t *testing.T) {
	specs := []nodeapi.InstanceSpec{
		{InstanceID: "i-system", PrivateIP: "10.0.0.10", SecurityGroups: []string{"sg-x"},
			Network: &nodeapi.InstanceNetwork{Mode: nodeapi.ModeSystem, Subnet: "10.0.0.0/24"}},
		{InstanceID: "i-managed", PrivateIP: "10.0.0.11", SecurityGroups: []string{"sg-x"},
			Network: &nodeapi.InstanceNetwork{Mode: nodeapi.ModeManagedNoVLAN, Subnet: "10.0.0.0/24"}},
		{InstanceID: "i-old", PrivateIP: "10.0.0.12", SecurityGroups: []string{"sg-x"}}, // an older controller: no network
	}
	rs, err := Build(Instances(specs), []nodeapi.SecurityGroup{{ID: "sg-x"}})
	if err != nil {
		t.Fatal(err)
	}
	text := func(id string) []string {
		var out []string
		for _, r := range rs.Chains[inChain(id)] {
			out = append(out, r.text())
		}
		return out
	}
	const dhcp = "udp dport 68 accept"
	for id, want := range map[string]bool{"i-system": true, "i-managed": false, "i-old": false} {
		got := text(id)
		if slices.Contains(got, dhcp) != want {
			t.Errorf("%s: ingress %q, want %q there: %v", id, got, dhcp, want)
		}
		if want && slices.Index(got, dhcp) > 1 {
			t.Errorf("%s: ingress %q: the DHCP answers must pass before the groups", id, got)
		}
	}
}

// TestScriptIsApply: what Apply programs and what nft -f makes of Script
// list the same, so the benchmark's reference loads the same ruleset.
func TestScriptIsApply(t *testing.T) {
	lab.Require(t, "nft")
	rs, err := Build([]Instance{
		{ID: "i-1", IP: netip.MustParseAddr("10.0.0.10"), Groups: []string{"sg-a", "sg-b"}},
		{ID: "i-2", IP: netip.MustParseAddr("10.0.0.11"), Groups: []string{"sg-b"}, NetworkDHCP: true},
	}, []nodeapi.SecurityGroup{
		{ID: "sg-a", Ingress: []nodeapi.SecurityGroupRule{{Protocol: "tcp", From: 22, To: 22, CIDR: "10.0.0.0/8"},
			{Protocol: "icmp", From: 8, To: 0, CIDR: "0.0.0.0/0"}, {Protocol: "udp", From: 1000, To: 2000, Group: "sg-b"}},
			Egress: []nodeapi.SecurityGroupRule{{Protocol: "-1", From: -1, To: -1, CIDR: "0.0.0.0/0"}}},
		{ID: "sg-b", Ingress: []nodeapi.SecurityGroupRule{{Protocol: "-1", From: -1, To: -1, Group: "sg-b"}},
			Members: []string{"10.0.0.11", "10.0.0.10"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	// A MANAGED node's VLAN bridge: its ports go through the same chains.
	rs.Bridges = []string{"ibvbr10"}
	list := func(ns *lab.NetNS) string {
		out, err := ns.Command(t.Context(), "nft", "list", "ruleset").CombinedOutput()
		if err != nil {
			t.Fatalf("nft list: %v: %s", err, out)
		}
		return string(out)
	}
	ours := lab.NewNetNS(t)
	if err := ours.Do(func() error {
		fw, err := New("br0", 0)
		if err != nil {
			return err
		}
		defer fw.Release()
		_, err = fw.Apply(rs)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	ref := lab.NewNetNS(t)
	cmd := ref.Command(t.Context(), "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(Script("br0", rs))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft -f: %v: %s\n%s", err, out, Script("br0", rs))
	}
	if a, b := list(ours), list(ref); a != b {
		t.Fatalf("Apply lists\n%s\nnft -f of Script lists\n%s", a, b)
	} else if !strings.Contains(a, `iifname "ibvbr10" ip saddr vmap @out_ports`) {
		t.Fatalf("no base chain rule for the VLAN bridge:\n%s", a)
	}
}

// TestLargeTable: a node's whole table (100 instances, 1,000 rules) goes
// in one transaction, and a one-rule change after it too.
func TestLargeTable(t *testing.T) {
	lab.Require(t, "nft")
	var insts []Instance
	ip := netip.MustParseAddr("10.9.0.10")
	for i := range 100 {
		insts = append(insts, Instance{ID: fmt.Sprintf("i-%03d", i), IP: ip, Groups: []string{fmt.Sprintf("sg-%d", i%10)}})
		ip = ip.Next()
	}
	var groups []nodeapi.SecurityGroup
	for g := range 10 {
		sg := nodeapi.SecurityGroup{ID: fmt.Sprintf("sg-%d", g)}
		for r := range 100 {
			sg.Ingress = append(sg.Ingress, nodeapi.SecurityGroupRule{Protocol: "tcp", From: 1000 + r, To: 1000 + r,
				CIDR: fmt.Sprintf("10.%d.%d.0/24", g, r)})
		}
		groups = append(groups, sg)
	}
	// The namespace by descriptor, from a thread outside it (as an agent
	// whose bridge is in another namespace opens it).
	ns := lab.NewNetNS(t)
	nsfd, err := unix.Open("/run/netns/"+ns.Name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(nsfd)
	err = func() error {
		fw, err := New("br0", nsfd)
		if err != nil {
			return err
		}
		defer fw.Release()
		rs, err := Build(insts, groups)
		if err != nil {
			return err
		}
		if _, err := fw.Apply(rs); err != nil {
			return err
		}
		groups[3].Ingress = groups[3].Ingress[1:]
		if rs, err = Build(insts, groups); err != nil {
			return err
		}
		_, err = fw.Apply(rs)
		return err
	}()
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("nft", "list", "table", "inet", TableName("br0")).CombinedOutput(); err == nil {
		t.Fatalf("the table is in the test's own namespace:\n%s", out)
	}
	out, err := ns.Command(t.Context(), "nft", "list", "chain", "inet", TableName("br0"), "gin_sg-3_tcp").CombinedOutput()
	if err != nil {
		t.Fatalf("nft list chain: %v: %s", err, out)
	}
	if n := strings.Count(string(out), "accept"); n != 99 || strings.Contains(string(out), "10.3.0.0/24") {
		t.Fatalf("group 3 after the change has %d rules:\n%s", n, out)
	}
}
