package e2e

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	sdk "github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"ironbark/nodeagent/natmap/natmaptest"
)

// TestElasticIPWithSecurityGroup: an instance launched with a group that
// allows one port is reachable from outside through its elastic IP on
// that port and not on another; revoking the rule closes it. The node
// agent enforces both the NAT (ironbark-nat) and the group
// (ironbark-sg-BRIDGE) in the node's namespace.
func TestElasticIPWithSecurityGroup(t *testing.T) {
	e := start(t)
	e.securityGroups = true
	ctx := context.Background()
	e.startAgent(t)
	until(t, "zone available", func() error {
		zs, err := e.ec2.DescribeAvailabilityZones(ctx, &sdk.DescribeAvailabilityZonesInput{})
		if err == nil && (len(zs.AvailabilityZones) != 1 || zs.AvailabilityZones[0].State != types.AvailabilityZoneStateAvailable) {
			err = &mismatch{"unavailable", "available"}
		}
		return err
	})
	sg, err := e.ec2.CreateSecurityGroup(ctx, &sdk.CreateSecurityGroupInput{GroupName: aws.String("web"), Description: aws.String("web")})
	if err != nil {
		t.Fatal(err)
	}
	open := []types.IpPermission{{IpProtocol: aws.String("tcp"), FromPort: aws.Int32(natmaptest.Port), ToPort: aws.Int32(natmaptest.Port),
		IpRanges: []types.IpRange{{CidrIp: aws.String("0.0.0.0/0")}}}}
	if _, err := e.ec2.AuthorizeSecurityGroupIngress(ctx, &sdk.AuthorizeSecurityGroupIngressInput{GroupId: sg.GroupId, IpPermissions: open}); err != nil {
		t.Fatal(err)
	}
	run, err := e.ec2.RunInstances(ctx, &sdk.RunInstancesInput{ImageId: aws.String(e.image(t)), MinCount: aws.Int32(1), MaxCount: aws.Int32(1),
		InstanceType: types.InstanceTypeM1Small, SecurityGroupIds: []string{aws.ToString(sg.GroupId)}})
	if err != nil {
		t.Fatal(err)
	}
	id, ip := aws.ToString(run.Instances[0].InstanceId), aws.ToString(run.Instances[0].PrivateIpAddress)
	in := e.node.AddInstanceIn(t, "i0", ip, netip.MustParsePrefix(subnet))
	in.NS.ServeTCP(t, "0.0.0.0", 2222)
	alloc, err := e.ec2.AllocateAddress(ctx, &sdk.AllocateAddressInput{Domain: types.DomainTypeVpc})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.ec2.AssociateAddress(ctx, &sdk.AssociateAddressInput{AllocationId: alloc.AllocationId, InstanceId: aws.String(id)}); err != nil {
		t.Fatal(err)
	}
	eip := aws.ToString(alloc.PublicIp)
	out := func(addr string) (string, error) { return natmaptest.Dial(e.world.Out, addr) }
	until(t, "the group's port through the elastic IP", reach(eip, "i0 198.51.100.1", out))
	if err := e.world.Out.ConnectTCP(netip.MustParseAddr(eip), 2222, time.Second); err == nil {
		t.Fatal("a port the group does not name is reachable through the elastic IP")
	}
	if _, err := e.ec2.RevokeSecurityGroupIngress(ctx, &sdk.RevokeSecurityGroupIngressInput{GroupId: sg.GroupId, IpPermissions: open}); err != nil {
		t.Fatal(err)
	}
	until(t, "the revoked port closed", func() error {
		if err := e.world.Out.ConnectTCP(netip.MustParseAddr(eip), natmaptest.Port, time.Second); err == nil {
			return &mismatch{"open", "closed"}
		}
		return nil
	})
}
