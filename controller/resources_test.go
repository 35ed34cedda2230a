package controller

import (
	"context"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	sdk "github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"ironbark/internal/store"
	"ironbark/internal/store/storetest"
)

func TestSecurityGroups(t *testing.T) {
	storetest.Each(t, Migrations(), func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		e := newTestEnv(t, db)
		c := e.client(e.alice)
		web := must[*sdk.CreateSecurityGroupOutput](t)(c.CreateSecurityGroup(ctx, &sdk.CreateSecurityGroupInput{
			GroupName: aws.String("web"), Description: aws.String("web servers")}))
		_, err := c.CreateSecurityGroup(ctx, &sdk.CreateSecurityGroupInput{GroupName: aws.String("web"), Description: aws.String("again")})
		wantCode(t, err, "InvalidGroup.Duplicate")

		ssh := types.IpPermission{IpProtocol: aws.String("tcp"), FromPort: aws.Int32(22), ToPort: aws.Int32(22),
			IpRanges: []types.IpRange{{CidrIp: aws.String("10.0.0.0/8")}}}
		https := types.IpPermission{IpProtocol: aws.String("tcp"), FromPort: aws.Int32(443), ToPort: aws.Int32(443),
			IpRanges: []types.IpRange{{CidrIp: aws.String("0.0.0.0/0")}}}
		must[*sdk.AuthorizeSecurityGroupIngressOutput](t)(c.AuthorizeSecurityGroupIngress(ctx, &sdk.AuthorizeSecurityGroupIngressInput{
			GroupId: web.GroupId, IpPermissions: []types.IpPermission{ssh, https}}))
		_, err = c.AuthorizeSecurityGroupIngress(ctx, &sdk.AuthorizeSecurityGroupIngressInput{GroupId: web.GroupId, IpPermissions: []types.IpPermission{ssh}})
		wantCode(t, err, "InvalidPermission.Duplicate")
		_, err = c.AuthorizeSecurityGroupIngress(ctx, &sdk.AuthorizeSecurityGroupIngressInput{GroupId: web.GroupId,
			IpPermissions: []types.IpPermission{{IpProtocol: aws.String("tcp"), FromPort: aws.Int32(80), ToPort: aws.Int32(70),
				IpRanges: []types.IpRange{{CidrIp: aws.String("0.0.0.0/0")}}}}})
		wantCode(t, err, "InvalidParameterValue")
		_, err = c.AuthorizeSecurityGroupIngress(ctx, &sdk.AuthorizeSecurityGroupIngressInput{GroupId: web.GroupId,
			IpPermissions: []types.IpPermission{{IpProtocol: aws.String("tcp"), FromPort: aws.Int32(80), ToPort: aws.Int32(80),
				IpRanges: []types.IpRange{{CidrIp: aws.String("10.0.0.300/8")}}}}})
		wantCode(t, err, "InvalidParameterValue")

		got := must[*sdk.DescribeSecurityGroupsOutput](t)(c.DescribeSecurityGroups(ctx, &sdk.DescribeSecurityGroupsInput{
			Filters: []types.Filter{{Name: aws.String("ip-permission.from-port"), Values: []string{"443"}}}}))
		if len(got.SecurityGroups) != 1 || len(got.SecurityGroups[0].IpPermissions) != 2 {
			t.Fatalf("groups: %+v", got.SecurityGroups)
		}
		all := must[*sdk.DescribeSecurityGroupsOutput](t)(c.DescribeSecurityGroups(ctx, &sdk.DescribeSecurityGroupsInput{}))
		if len(all.SecurityGroups) != 2 { // default + web
			t.Fatalf("alice has %d groups", len(all.SecurityGroups))
		}
		if _, err := e.client(e.bob).DescribeSecurityGroups(ctx, &sdk.DescribeSecurityGroupsInput{GroupIds: []string{aws.ToString(web.GroupId)}}); err == nil {
			t.Fatal("bob sees alice's group")
		}

		// In use by an instance: cannot delete until it is terminated.
		out := must[*sdk.RunInstancesOutput](t)(c.RunInstances(ctx, &sdk.RunInstancesInput{ImageId: aws.String(e.image),
			MinCount: aws.Int32(1), MaxCount: aws.Int32(1), SecurityGroupIds: []string{aws.ToString(web.GroupId)}}))
		if aws.ToString(out.Instances[0].SecurityGroups[0].GroupName) != "web" {
			t.Fatalf("instance groups: %+v", out.Instances[0].SecurityGroups)
		}
		_, err = c.DeleteSecurityGroup(ctx, &sdk.DeleteSecurityGroupInput{GroupId: web.GroupId})
		wantCode(t, err, "DependencyViolation")
		must[*sdk.RevokeSecurityGroupIngressOutput](t)(c.RevokeSecurityGroupIngress(ctx, &sdk.RevokeSecurityGroupIngressInput{
			GroupId: web.GroupId, IpPermissions: []types.IpPermission{ssh}}))
		_, err = c.RevokeSecurityGroupIngress(ctx, &sdk.RevokeSecurityGroupIngressInput{GroupId: web.GroupId, IpPermissions: []types.IpPermission{ssh}})
		wantCode(t, err, "InvalidPermission.NotFound")
		must[*sdk.TerminateInstancesOutput](t)(c.TerminateInstances(ctx, &sdk.TerminateInstancesInput{InstanceIds: runIDs(out)}))
		_, err = c.DeleteSecurityGroup(ctx, &sdk.DeleteSecurityGroupInput{GroupId: web.GroupId})
		wantCode(t, err, "DependencyViolation") // still shutting down
		e.observe(t, runIDs(out), "terminated")
		e.checkUsage(t)
		must[*sdk.DeleteSecurityGroupOutput](t)(c.DeleteSecurityGroup(ctx, &sdk.DeleteSecurityGroupInput{GroupId: web.GroupId}))
		_, err = c.DeleteSecurityGroup(ctx, &sdk.DeleteSecurityGroupInput{GroupName: aws.String("default")})
		wantCode(t, err, "CannotDelete")
	})
}

func TestAddressesAndTags(t *testing.T) {
	storetest.Each(t, Migrations(), func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		e := newTestEnv(t, db)
		c := e.client(e.alice)
		ids := runIDs(e.run(c, 1, ""))

		// The pool is 198.51.100.0/29: six usable addresses.
		var allocs []string
		for i := 0; i < 6; i++ {
			a := must[*sdk.AllocateAddressOutput](t)(c.AllocateAddress(ctx, &sdk.AllocateAddressInput{}))
			allocs = append(allocs, aws.ToString(a.AllocationId))
		}
		_, err := e.client(e.bob).AllocateAddress(ctx, &sdk.AllocateAddressInput{})
		wantCode(t, err, "AddressLimitExceeded")
		must[*sdk.ReleaseAddressOutput](t)(c.ReleaseAddress(ctx, &sdk.ReleaseAddressInput{AllocationId: aws.String(allocs[5])}))
		bobs := must[*sdk.AllocateAddressOutput](t)(e.client(e.bob).AllocateAddress(ctx, &sdk.AllocateAddressInput{}))
		_, err = e.client(e.bob).AssociateAddress(ctx, &sdk.AssociateAddressInput{AllocationId: bobs.AllocationId, InstanceId: aws.String(ids[0])})
		wantCode(t, err, "InvalidInstanceID.NotFound")

		assoc := must[*sdk.AssociateAddressOutput](t)(c.AssociateAddress(ctx, &sdk.AssociateAddressInput{
			AllocationId: aws.String(allocs[0]), InstanceId: aws.String(ids[0])}))
		desc := must[*sdk.DescribeAddressesOutput](t)(c.DescribeAddresses(ctx, &sdk.DescribeAddressesInput{
			Filters: []types.Filter{{Name: aws.String("instance-id"), Values: ids}}}))
		if len(desc.Addresses) != 1 || aws.ToString(desc.Addresses[0].AssociationId) != aws.ToString(assoc.AssociationId) {
			t.Fatalf("addresses: %+v", desc.Addresses)
		}
		inst := must[*sdk.DescribeInstancesOutput](t)(c.DescribeInstances(ctx, &sdk.DescribeInstancesInput{InstanceIds: ids}))
		if aws.ToString(inst.Reservations[0].Instances[0].PublicIpAddress) != aws.ToString(desc.Addresses[0].PublicIp) {
			t.Fatalf("instance public ip %q", aws.ToString(inst.Reservations[0].Instances[0].PublicIpAddress))
		}
		must[*sdk.DisassociateAddressOutput](t)(c.DisassociateAddress(ctx, &sdk.DisassociateAddressInput{AssociationId: assoc.AssociationId}))
		inst = must[*sdk.DescribeInstancesOutput](t)(c.DescribeInstances(ctx, &sdk.DescribeInstancesInput{InstanceIds: ids}))
		if inst.Reservations[0].Instances[0].PublicIpAddress != nil {
			t.Fatal("public ip stays after disassociate")
		}

		// Tags.
		must[*sdk.CreateTagsOutput](t)(c.CreateTags(ctx, &sdk.CreateTagsInput{Resources: []string{ids[0], allocs[0]},
			Tags: []types.Tag{{Key: aws.String("env"), Value: aws.String("prod")}, {Key: aws.String("team"), Value: aws.String("db")}}}))
		tags := must[*sdk.DescribeTagsOutput](t)(c.DescribeTags(ctx, &sdk.DescribeTagsInput{
			Filters: []types.Filter{{Name: aws.String("resource-type"), Values: []string{"instance"}}}}))
		if len(tags.Tags) != 2 {
			t.Fatalf("tags: %+v", tags.Tags)
		}
		var paged int
		pg := sdk.NewDescribeTagsPaginator(c, &sdk.DescribeTagsInput{MaxResults: aws.Int32(5)})
		for pg.HasMorePages() {
			paged += len(must[*sdk.DescribeTagsOutput](t)(pg.NextPage(ctx)).Tags)
		}
		if paged != 4 {
			t.Fatalf("paged tags: %d", paged)
		}
		must[*sdk.DeleteTagsOutput](t)(c.DeleteTags(ctx, &sdk.DeleteTagsInput{Resources: []string{ids[0]},
			Tags: []types.Tag{{Key: aws.String("env"), Value: aws.String("staging")}, {Key: aws.String("team")}}}))
		tags = must[*sdk.DescribeTagsOutput](t)(c.DescribeTags(ctx, &sdk.DescribeTagsInput{
			Filters: []types.Filter{{Name: aws.String("resource-id"), Values: ids}}}))
		if len(tags.Tags) != 1 || aws.ToString(tags.Tags[0].Key) != "env" {
			t.Fatalf("after delete (env=staging does not match prod): %+v", tags.Tags)
		}
		if n := len(must[*sdk.DescribeTagsOutput](t)(e.client(e.bob).DescribeTags(ctx, &sdk.DescribeTagsInput{})).Tags); n != 0 {
			t.Fatalf("bob sees %d of alice's tags", n)
		}
	})
}
