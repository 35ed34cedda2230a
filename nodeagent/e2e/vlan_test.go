package e2e

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	sdk "github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"ironbark/controller"
	"ironbark/controller/cluster"
	"ironbark/internal/lab"
	"ironbark/internal/nodeapi"
)

// TestXenManagedVLANs is MANAGED mode on a real node: the Xen node of
// TestXenNode in a cluster whose security groups each get a VLAN (from
// 100) and a slice of 10.66.0.0/16, and whose launches get public
// addresses. Three Xen PV guests, a1, b1 and a2, in groups A, B and A. Each takes its address by DHCP from the agent on its VLAN's bridge,
// in its group's slice. a2's user data pings a1 (same group: answers), b1
// by its public address (an elastic IP's DNAT: answers) and b1 by its
// private address (another group: the node does not route it). Both
// groups let ICMP in from anywhere, so what keeps a2 from b1 is the VLAN
// and the node's filter between VLAN bridges. On the wire between the lab
// and the node, a1 answers ARP tagged with A's VLAN only: not with B's,
// not untagged. After terminate the node has no VLAN bridge or device and
// no rule naming them.
func TestXenManagedVLANs(t *testing.T) {
	ctx := context.Background()
	subnet := netip.MustParsePrefix("10.66.0.0/16")
	pool := netip.MustParsePrefix("198.51.100.16/28")
	x := startXen(t, func(e *env) {
		if err := e.svc.SetNetwork(ctx, "zone-e2e", cluster.Network{Mode: nodeapi.ModeManaged, Subnet: subnet.String(),
			PublicIPs: true, VLANs: [2]int{100, 199}}, controller.Settings{}.ReservedSubnets()); err != nil {
			t.Fatal(err)
		}
		if err := controller.AddAddressBlock(ctx, e.db, pool.String()); err != nil {
			t.Fatal(err)
		}
	}, "--max-cores 3") // three one-core guests on the node's two
	e, node := x.env, x.node
	eri := e.register(t, controller.KindRamdisk, "xenguest", lab.XenGuestInitramfs(t, x.work, x.kernel))
	emi := e.machineImage(t, eri)
	group := func(name string) string {
		sg, err := e.ec2.CreateSecurityGroup(ctx, &sdk.CreateSecurityGroupInput{GroupName: aws.String(name), Description: aws.String(name)})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.ec2.AuthorizeSecurityGroupIngress(ctx, &sdk.AuthorizeSecurityGroupIngressInput{GroupId: sg.GroupId,
			IpPermissions: []types.IpPermission{{IpProtocol: aws.String("icmp"), FromPort: aws.Int32(-1), ToPort: aws.Int32(-1),
				IpRanges: []types.IpRange{{CidrIp: aws.String("0.0.0.0/0")}}}}}); err != nil {
			t.Fatal(err)
		}
		return aws.ToString(sg.GroupId)
	}
	ga, gb := group("vlan-a"), group("vlan-b")
	type inst struct {
		id              string
		private, public netip.Addr
		vlan            int
		net             netip.Prefix
	}
	launch := func(sg, userData string) *inst {
		t.Helper()
		in := &sdk.RunInstancesInput{ImageId: aws.String(emi), InstanceType: types.InstanceTypeM1Small, MinCount: aws.Int32(1), MaxCount: aws.Int32(1),
			SecurityGroupIds: []string{sg}, Placement: &types.Placement{AvailabilityZone: aws.String("zone-e2e")}}
		if userData != "" {
			in.UserData = aws.String(base64.StdEncoding.EncodeToString([]byte(userData)))
		}
		run, err := e.ec2.RunInstances(ctx, in)
		if err != nil {
			t.Fatalf("RunInstances: %v", err)
		}
		i := &inst{id: aws.ToString(run.Instances[0].InstanceId)}
		d, err := e.ec2.DescribeInstances(ctx, &sdk.DescribeInstancesInput{InstanceIds: []string{i.id}})
		if err != nil {
			t.Fatal(err)
		}
		got := d.Reservations[0].Instances[0]
		i.private, _ = netip.ParseAddr(aws.ToString(got.PrivateIpAddress))
		i.public, _ = netip.ParseAddr(aws.ToString(got.PublicIpAddress))
		// The group's network as the controller recorded it (and sends
		// the node).
		var s string
		if err := e.db.QueryRow(ctx, `SELECT vlan, net_subnet FROM instances WHERE id = ?`, i.id).Scan(&i.vlan, &s); err != nil {
			t.Fatal(err)
		}
		i.net, _ = netip.ParsePrefix(s)
		if !i.net.IsValid() || !subnet.Contains(i.net.Addr()) || !i.net.Contains(i.private) || !pool.Contains(i.public) || i.vlan < 100 || i.vlan > 199 {
			t.Fatalf("%s: private %s public %s on VLAN %d subnet %q: want a VLAN from 100-199, a slice of %s holding the private address, a public one from %s",
				i.id, i.private, i.public, i.vlan, s, subnet, pool)
		}
		return i
	}
	// One at a time: dom0 makes one domain's devices at once (on busy
	// cores, three at once overran libxl's time for its hotplug scripts).
	a1 := launch(ga, "")
	e.waitRunning(t, a1.id, xenGuestWait)
	b1 := launch(gb, "")
	e.waitRunning(t, b1.id, xenGuestWait)
	// a2 tries each peer for a while: they may still be booting.
	a2 := launch(ga, fmt.Sprintf(`try() { n=0; while [ $n -lt $2 ]; do ping -c 1 -W 2 $1 >/dev/null 2>&1 && return 0; n=$((n+1)); done; return 1; }
try %s 60 && echo SAME-GROUP=answered || echo SAME-GROUP=silent
try %s 60 && echo OTHER-GROUP-PUBLIC=answered || echo OTHER-GROUP-PUBLIC=silent
try %s 3 && echo OTHER-GROUP-PRIVATE=answered || echo OTHER-GROUP-PRIVATE=silent
`, a1.private, b1.public, b1.private))
	if a1.vlan != a2.vlan || a1.net != a2.net || a1.vlan == b1.vlan || a1.net.Overlaps(b1.net) {
		t.Fatalf("group A: VLAN %d %s and %d %s, group B: VLAN %d %s: want A's two alike and B's apart",
			a1.vlan, a1.net, a2.vlan, a2.net, b1.vlan, b1.net)
	}
	t.Logf("group A: VLAN %d %s (a1 %s, a2 %s), group B: VLAN %d %s (b1 %s, public %s)",
		a1.vlan, a1.net, a1.private, a2.private, b1.vlan, b1.net, b1.private, b1.public)

	e.waitRunning(t, a2.id, xenGuestWait)
	for _, i := range []*inst{a1, b1, a2} {
		e.waitMarkerFor(t, i.id, lab.XenGuestMarker, xenGuestWait)
		con := e.console(t, i.id)
		if ip := regexp.MustCompile(`(?m)^IP=(\S+)`).FindSubmatch(con); ip == nil || string(ip[1]) != i.private.String() {
			t.Fatalf("%s: DHCP gave %q, want %s (its group's); console tail:\n%s", i.id, field(ip), i.private, con[max(0, len(con)-3000):])
		}
	}
	con := string(e.console(t, a2.id))
	for _, want := range []string{"SAME-GROUP=answered", "OTHER-GROUP-PUBLIC=answered", "OTHER-GROUP-PRIVATE=silent"} {
		if !strings.Contains(con, want) {
			t.Fatalf("a2 (%s) lacks %q; console tail:\n%s", a2.private, want, con[max(0, len(con)-2000):])
		}
	}
	t.Logf("a2 says: %s", strings.Join(regexp.MustCompile(`(?m)^[A-Z-]*GROUP[A-Z-]*=[a-z]+`).FindAllString(con, -1), ", "))

	// The wire: a1 answers on A's VLAN only. The asker is an address of
	// A's slice nobody has (the slice's last).
	asker := lastOf(a1.net)
	for _, c := range []struct {
		vlan   int
		answer bool
	}{{a1.vlan, true}, {b1.vlan, false}, {0, false}} {
		tags, err := x.net.NS.TaggedARP(x.net.Bridge, c.vlan, asker, a1.private, 3*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if c.answer && (len(tags) == 0 || tags[0] != a1.vlan) || !c.answer && len(tags) > 0 {
			t.Fatalf("ARP for a1 (%s) tagged %d: replies tagged %v; want a1 to answer on VLAN %d only", a1.private, c.vlan, tags, a1.vlan)
		}
		t.Logf("ARP who-has %s on VLAN %d: replies tagged %v", a1.private, c.vlan, tags)
	}
	// An agent restart: stopped (its services on the VLAN bridges go,
	// with their bridge filters), started again, it makes the same links,
	// addresses and rules from the controller's specs.
	state := "ip -br link show type bridge | sort; ip -br -d link show type vlan | sort; ip -4 -br addr | grep ibvbr | sort;" +
		" nft list tables | grep -E 'ibvbr|ironbark-vlan|ironbark-sg' | sort | while read _ f n; do nft list table $f $n; done"
	before := node.Exec(t, state)
	t.Logf("dom0's VLANs:\n%s", before)
	stopped := node.Exec(t, "kill $(pgrep -x ironbark-node); while pgrep -x ironbark-node >/dev/null; do sleep 0.5; done; "+state)
	node.Exec(t, "setsid "+x.agent+" </dev/null >/var/log/ironbark-node-restarted.log 2>&1 &")
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("restarted agent's log:\n%s", node.Exec(t, "tail -n 60 /var/log/ironbark-node-restarted.log"))
		}
	})
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(2 * time.Second) {
		after := node.Exec(t, state)
		if after == before {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after an agent restart dom0 has\n%s\nnot as before\n%s\n(stopped:\n%s)", after, before, stopped)
		}
	}
	if stopped == before {
		t.Logf("(the stopped agent left everything as it was)")
	}

	ids := []string{a1.id, b1.id, a2.id}
	if _, err := e.ec2.TerminateInstances(ctx, &sdk.TerminateInstancesInput{InstanceIds: ids}); err != nil {
		t.Fatalf("TerminateInstances: %v", err)
	}
	for _, id := range ids {
		e.waitState(t, id, types.InstanceStateNameTerminated, xenGuestWait)
	}
	// The agent removes a VLAN once its last instance is gone (checked
	// every few seconds; each look into dom0 costs a second or so).
	check := "ip -o link | grep -cE 'ibvbr|ibvlan'; nft list ruleset | grep -cE 'ibvbr|ironbark-vlan'"
	deadline := time.Now().Add(2 * time.Minute)
	for {
		left := strings.Fields(node.Exec(t, check))
		if len(left) == 2 && left[0] == "0" && left[1] == "0" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after terminate dom0 still has (links, rules) %v:\n%s", left,
				node.Exec(t, "ip -br link; nft list ruleset | grep -E -B3 'ibvbr|ironbark-vlan'"))
		}
		time.Sleep(2 * time.Second)
	}
}

// lastOf is p's last host address.
func lastOf(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	n := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3]) | (1<<(32-p.Bits()) - 2)
	return netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)})
}
