package controller

import (
	"context"
	"errors"
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
