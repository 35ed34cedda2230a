package controller

import (
	"context"
	"errors"
	"maps"
	"net/netip"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	sdk "github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"ironbark/internal/nodeapi"
	"ironbark/internal/store"
	"ironbark/internal/store/storetest"
)

// netPlacer is fixedPlacer with each zone's networking, as the cluster
// side keeps it.
type netPlacer struct {
	*fixedPlacer
	nets map[string]ZoneNetwork
}

func (p *netPlacer) ZoneNetworks(context.Context) (map[string]ZoneNetwork, error) { return p.nets, nil }

func TestCheckSubnets(t *testing.T) {
	for _, tc := range []struct {
		subnets map[string]string
		overlap bool
		bad     string
	}{
		{subnets: map[string]string{"cluster a": "10.91.0.0/24", "cluster b": "10.92.0.0/24", "default": "10.88.0.0/16"}},
		{subnets: map[string]string{"cluster a": "10.88.4.0/24", "default": "10.88.0.0/16"}, overlap: true},
		{subnets: map[string]string{"cluster a": "10.91.0.0/16", "cluster b": "10.91.200.0/24"}, overlap: true},
		{subnets: map[string]string{"cluster a": "10.91.0.1/24"}, bad: "network address is 10.91.0.0/24"},
		{subnets: map[string]string{"cluster a": "10.91.0.0/30"}, bad: "from /8 to /28"},
		{subnets: map[string]string{"cluster a": "fd00::/64"}, bad: "IPv4"},
	} {
		err := CheckSubnets(tc.subnets)
		switch {
		case tc.overlap && !errors.Is(err, ErrSubnetOverlap):
			t.Errorf("%v: %v, want an overlap", tc.subnets, err)
		case tc.bad != "" && (err == nil || !strings.Contains(err.Error(), tc.bad)):
			t.Errorf("%v: %v, want %q", tc.subnets, err, tc.bad)
		case !tc.overlap && tc.bad == "" && err != nil:
			t.Errorf("%v: %v", tc.subnets, err)
		}
	}
	if _, err := New(Config{InstanceSubnet: "10.88.0.0/16", ClusterSubnets: map[string]string{"zone-a": "10.88.1.0/24"}}, nil, nil, nil); !errors.Is(err, ErrSubnetOverlap) {
		t.Errorf("a cluster subnet inside the default one: %v", err)
	}
}

// TestZoneNetworks: each zone's instances take addresses from its own
// subnet, DescribeSubnets shows it, a zone with public IPs gives one at
// launch (unless the request asks for none), the nodes are told mode,
// subnet, gateway and public address, and bad input changes nothing.
func TestZoneNetworks(t *testing.T) {
	storetest.Each(t, Migrations(), func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		e := newTestEnv(t, db)
		e.cloud.SetPlacer(&netPlacer{fixedPlacer: e.placer, nets: map[string]ZoneNetwork{
			"zone-a": {Mode: nodeapi.ModeManagedNoVLAN, Subnet: "10.91.0.0/24", PublicIPs: true},
			"zone-b": {Mode: nodeapi.ModeSystem, Subnet: "10.92.0.0/28"},
		}})
		c := e.client(e.alice)
		run := func(zone string, public *bool) (*sdk.RunInstancesOutput, error) {
			in := &sdk.RunInstancesInput{ImageId: aws.String(e.image), MinCount: aws.Int32(1), MaxCount: aws.Int32(1),
				InstanceType: "m1.small", Placement: &types.Placement{AvailabilityZone: aws.String(zone)}}
			if public != nil {
				in.NetworkInterfaces = []types.InstanceNetworkInterfaceSpecification{{DeviceIndex: aws.Int32(0), AssociatePublicIpAddress: public}}
			}
			return c.RunInstances(ctx, in)
		}
		a := must[*sdk.RunInstancesOutput](t)(run("zone-a", nil)).Instances[0]
		if aws.ToString(a.PrivateIpAddress) != "10.91.0.10" || aws.ToString(a.PublicIpAddress) != "198.51.100.1" {
			t.Fatalf("zone-a instance: private %q public %q", aws.ToString(a.PrivateIpAddress), aws.ToString(a.PublicIpAddress))
		}
		none := must[*sdk.RunInstancesOutput](t)(run("zone-a", aws.Bool(false))).Instances[0]
		if aws.ToString(none.PublicIpAddress) != "" || aws.ToString(none.PrivateIpAddress) != "10.91.0.11" {
			t.Fatalf("AssociatePublicIpAddress=false: public %q private %q", aws.ToString(none.PublicIpAddress), aws.ToString(none.PrivateIpAddress))
		}
		b := must[*sdk.RunInstancesOutput](t)(run("zone-b", nil)).Instances[0]
		if aws.ToString(b.PrivateIpAddress) != "10.92.0.10" || aws.ToString(b.PublicIpAddress) != "" {
			t.Fatalf("zone-b instance: private %q public %q", aws.ToString(b.PrivateIpAddress), aws.ToString(b.PublicIpAddress))
		}

		subnets := must[*sdk.DescribeSubnetsOutput](t)(c.DescribeSubnets(ctx, &sdk.DescribeSubnetsInput{}))
		got := map[string]string{}
		for _, s := range subnets.Subnets {
			got[aws.ToString(s.AvailabilityZone)] = aws.ToString(s.CidrBlock) + " " + aws.ToString(aws.String(strings.TrimSpace(
				map[bool]string{true: "public", false: "private"}[aws.ToBool(s.MapPublicIpOnLaunch)])))
		}
		if got["zone-a"] != "10.91.0.0/24 public" || got["zone-b"] != "10.92.0.0/28 private" {
			t.Fatalf("DescribeSubnets: %v", got)
		}

		specs, err := e.cloud.DesiredOnNode(ctx, "node-a1")
		if err != nil {
			t.Fatal(err)
		}
		var spec nodeapi.InstanceSpec
		for _, s := range specs {
			if s.InstanceID == aws.ToString(a.InstanceId) {
				spec = s
			}
		}
		want := nodeapi.InstanceNetwork{Mode: nodeapi.ModeManagedNoVLAN, Subnet: "10.91.0.0/24", Gateway: "10.91.0.1", PublicIP: "198.51.100.1"}
		if spec.Network == nil || *spec.Network != want {
			t.Fatalf("node spec network %+v, want %+v", spec.Network, want)
		}

		// The pool (198.51.100.0/29: six) runs dry: a launch in zone-a is
		// refused whole.
		for range 5 {
			must[*sdk.AllocateAddressOutput](t)(c.AllocateAddress(ctx, &sdk.AllocateAddressInput{}))
		}
		before := tableCounts(t, db)
		_, err = run("zone-a", nil)
		wantCode(t, err, "AddressLimitExceeded")
		if after := tableCounts(t, db); !equalCounts(before, after) {
			t.Fatalf("a refused launch left rows: %v -> %v", before, after)
		}

		// Associating an allocation held by another instance needs
		// AllowReassociation; an unknown one is not found.
		addrs := must[*sdk.DescribeAddressesOutput](t)(c.DescribeAddresses(ctx, &sdk.DescribeAddressesInput{}))
		alloc := addrs.Addresses[0].AllocationId
		must[*sdk.AssociateAddressOutput](t)(c.AssociateAddress(ctx, &sdk.AssociateAddressInput{AllocationId: alloc, InstanceId: a.InstanceId}))
		_, err = c.AssociateAddress(ctx, &sdk.AssociateAddressInput{AllocationId: alloc, InstanceId: none.InstanceId})
		wantCode(t, err, "Resource.AlreadyAssociated")
		must[*sdk.AssociateAddressOutput](t)(c.AssociateAddress(ctx, &sdk.AssociateAddressInput{AllocationId: alloc, InstanceId: none.InstanceId,
			AllowReassociation: aws.Bool(true)}))
		_, err = c.AssociateAddress(ctx, &sdk.AssociateAddressInput{AllocationId: aws.String("eipalloc-0123456789abcdef0"), InstanceId: b.InstanceId})
		wantCode(t, err, "InvalidAllocationID.NotFound")
		desc := must[*sdk.DescribeAddressesOutput](t)(c.DescribeAddresses(ctx, &sdk.DescribeAddressesInput{AllocationIds: []string{aws.ToString(alloc)}}))
		if aws.ToString(desc.Addresses[0].InstanceId) != aws.ToString(none.InstanceId) || aws.ToString(desc.Addresses[0].PrivateIpAddress) != "10.91.0.11" {
			t.Fatalf("DescribeAddresses after reassociation: %+v", desc.Addresses[0])
		}
		// A SYSTEM zone's instances take no public address.
		_, err = c.AssociateAddress(ctx, &sdk.AssociateAddressInput{AllocationId: addrs.Addresses[1].AllocationId, InstanceId: b.InstanceId})
		wantCode(t, err, "UnsupportedOperation")
		_, err = run("zone-b", aws.Bool(true))
		wantCode(t, err, "UnsupportedOperation")
	})
}

func equalCounts(a, b map[string]int) bool {
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return len(a) == len(b)
}

// TestGroupNetworks: in a MANAGED zone each security group gets its own
// VLAN and slice of the zone's subnet at its first launch (an instance
// takes its first group's), nodes are told them, a zone out of networks
// refuses a new group's launch whole, and a deleted group gives its
// network back.
func TestGroupNetworks(t *testing.T) {
	storetest.Each(t, Migrations(), func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		e := newTestEnv(t, db)
		// 64 addresses per group in a /24: four slices, but three VLANs.
		e.cloud.SetPlacer(&netPlacer{fixedPlacer: e.placer, nets: map[string]ZoneNetwork{
			"zone-a": {Mode: nodeapi.ModeManaged, Subnet: "10.93.0.0/24", VLANs: [2]int{100, 102}, AddrsPerNet: 64},
		}})
		c := e.client(e.alice)
		group := func(name string) string {
			g := must[*sdk.CreateSecurityGroupOutput](t)(c.CreateSecurityGroup(ctx, &sdk.CreateSecurityGroupInput{
				GroupName: aws.String(name), Description: aws.String(name)}))
			return aws.ToString(g.GroupId)
		}
		run := func(n int32, groups ...string) (*sdk.RunInstancesOutput, error) {
			return c.RunInstances(ctx, &sdk.RunInstancesInput{ImageId: aws.String(e.image), MinCount: aws.Int32(n), MaxCount: aws.Int32(n),
				InstanceType: "m1.small", SecurityGroupIds: groups, Placement: &types.Placement{AvailabilityZone: aws.String("zone-a")}})
		}
		net := func(out *sdk.RunInstancesOutput) map[string]nodeapi.InstanceNetwork {
			got := map[string]nodeapi.InstanceNetwork{}
			for _, node := range []string{"node-a1", "node-a2"} {
				specs, err := e.cloud.DesiredOnNode(ctx, node)
				if err != nil {
					t.Fatal(err)
				}
				for _, s := range specs {
					got[s.PrivateIP] = *s.Network
				}
			}
			want := map[string]nodeapi.InstanceNetwork{}
			for _, in := range out.Instances {
				ip := aws.ToString(in.PrivateIpAddress)
				if n, ok := got[ip]; ok {
					want[ip] = n
				} else {
					t.Fatalf("instance %s (%s) is on no node", aws.ToString(in.InstanceId), ip)
				}
			}
			return want
		}
		g1, g2, g3 := group("g1"), group("g2"), group("g3")
		def := must[*sdk.RunInstancesOutput](t)(run(1))
		one := must[*sdk.RunInstancesOutput](t)(run(2, g1))
		two := must[*sdk.RunInstancesOutput](t)(run(1, g2, g1)) // g2's network: the first group's
		for _, tc := range []struct {
			out  *sdk.RunInstancesOutput
			want map[string]nodeapi.InstanceNetwork
		}{
			{def, map[string]nodeapi.InstanceNetwork{"10.93.0.2": {Mode: nodeapi.ModeManaged, Subnet: "10.93.0.0/26", Gateway: "10.93.0.1", VLAN: 100}}},
			{one, map[string]nodeapi.InstanceNetwork{
				"10.93.0.66": {Mode: nodeapi.ModeManaged, Subnet: "10.93.0.64/26", Gateway: "10.93.0.65", VLAN: 101},
				"10.93.0.67": {Mode: nodeapi.ModeManaged, Subnet: "10.93.0.64/26", Gateway: "10.93.0.65", VLAN: 101}}},
			{two, map[string]nodeapi.InstanceNetwork{"10.93.0.130": {Mode: nodeapi.ModeManaged, Subnet: "10.93.0.128/26", Gateway: "10.93.0.129", VLAN: 102}}},
		} {
			if got := net(tc.out); !maps.Equal(got, tc.want) {
				t.Errorf("networks %+v, want %+v", got, tc.want)
			}
		}
		// A fourth group finds no VLAN left: refused, nothing kept.
		before := tableCounts(t, db)
		_, err := run(1, g3)
		wantCode(t, err, "InsufficientFreeAddressesInSubnet")
		if after := tableCounts(t, db); !equalCounts(before, after) {
			t.Fatalf("a refused launch left rows: %v -> %v", before, after)
		}
		// g2's instance ends and g2 is deleted: g3 takes its network.
		must[*sdk.TerminateInstancesOutput](t)(c.TerminateInstances(ctx, &sdk.TerminateInstancesInput{InstanceIds: runIDs(two)}))
		e.observe(t, runIDs(two), "terminated")
		must[*sdk.DeleteSecurityGroupOutput](t)(c.DeleteSecurityGroup(ctx, &sdk.DeleteSecurityGroupInput{GroupId: aws.String(g2)}))
		three := must[*sdk.RunInstancesOutput](t)(run(1, g3))
		if got := net(three); got["10.93.0.130"].VLAN != 102 {
			t.Fatalf("g3 after g2's deletion: %+v", got)
		}
		// g1's next instance joins g1's network.
		more := must[*sdk.RunInstancesOutput](t)(run(1, g1))
		if got := net(more); got["10.93.0.68"].VLAN != 101 {
			t.Fatalf("g1's third instance: %+v", got)
		}
	})
}

func TestGroupNetCarving(t *testing.T) {
	for _, tc := range []struct {
		subnet string
		addrs  int
		bits   int
	}{
		{"10.88.0.0/16", 0, 24}, {"10.88.0.0/24", 0, 28}, {"10.88.0.0/20", 0, 24}, {"10.0.0.0/8", 0, 24}, {"10.88.0.0/16", 32, 27},
	} {
		if got := GroupNetBits(netip.MustParsePrefix(tc.subnet), tc.addrs); got != tc.bits {
			t.Errorf("GroupNetBits(%s, %d) = %d, want %d", tc.subnet, tc.addrs, got, tc.bits)
		}
	}
	for _, bad := range []struct {
		vlans [2]int
		addrs int
	}{{[2]int{0, 10}, 0}, {[2]int{10, 4095}, 0}, {[2]int{20, 10}, 0}, {[2]int{}, 8}, {[2]int{}, 100}} {
		if err := CheckVLANs(bad.vlans, bad.addrs); err == nil {
			t.Errorf("CheckVLANs(%v, %d) accepted", bad.vlans, bad.addrs)
		}
	}
	if err := CheckGroupNets("10.88.0.0/24", [2]int{}, 512); err == nil {
		t.Error("512 addresses per group in a /24 accepted")
	}
	z := zoneNet{subnet: netip.MustParsePrefix("10.88.0.0/16"), vlans: DefaultVLANs, netBits: 24}
	if n := z.groupNets(); n != 256 {
		t.Errorf("a /16 in /24s with VLANs 10-4094: %d networks, want 256", n)
	}
	g := z.groupNet(255)
	if g.subnet.String() != "10.88.255.0/24" || g.vlan != 265 || g.pool.size() != 253 {
		t.Errorf("the last network: %s vlan %d, %d addresses", g.subnet, g.vlan, g.pool.size())
	}
}
