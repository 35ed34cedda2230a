package controller

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	sdk "github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"ironbark/internal/nodeapi"
	"ironbark/internal/store"
	"ironbark/internal/store/storetest"
)

// tfState is what Terraform's AWS provider keeps of the three resources
// after a read: a second plan shows no change when a fresh read gives the
// same state.
type tfState struct {
	KeyFingerprint, KeyPublic                          string
	GroupName, GroupDesc, GroupVpc                     string
	Ingress, Egress                                    string
	InstanceType, InstanceKey, InstanceImage           string
	InstanceGroups, InstanceSubnet, InstanceVpc        string
	InstanceZone, InstancePrivateIP, InstanceTags      string
	ShutdownBehavior, TerminationProtection, StopProt  string
	UserData, PrimaryInterface, SourceDestCheck, State string
	KeyTags, GroupTags                                 string
}

// TestTerraformProviderCycle replays, with aws-sdk-go-v2, the calls
// Terraform's AWS provider (v5) makes for a key pair, a security group
// with one ingress rule and an instance: apply, a refresh that must find
// no change, destroy. Neither Terraform nor OpenTofu is packaged in Debian,
// and the provider cannot be built from the Go module proxy (only its
// v1.60.0 of 2019 is there), so this is the closest real thing: the same
// actions, parameters and reads, through a real SDK and the wire layer.
func TestTerraformProviderCycle(t *testing.T) {
	storetest.Each(t, Migrations(), func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		e := newTestEnv(t, db)
		c := e.client(e.alice)

		// Provider configure: the account.
		if _, out := e.postTo("/", "sts", e.alice, "Action=GetCallerIdentity&Version=2011-06-15"); !strings.Contains(out, "<Account>"+e.alice.ID+"</Account>") {
			t.Fatalf("GetCallerIdentity: %s", out)
		}

		// aws_key_pair.
		pub, _, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		must[*sdk.ImportKeyPairOutput](t)(c.ImportKeyPair(ctx, &sdk.ImportKeyPairInput{KeyName: aws.String("tf-key"),
			PublicKeyMaterial: openSSHPublicKey(pub),
			TagSpecifications: []types.TagSpecification{{ResourceType: types.ResourceTypeKeyPair, Tags: []types.Tag{{Key: aws.String("Name"), Value: aws.String("tf-key")}}}}}))

		// aws_security_group with one inline ingress rule and no egress.
		sg := must[*sdk.CreateSecurityGroupOutput](t)(c.CreateSecurityGroup(ctx, &sdk.CreateSecurityGroupInput{
			GroupName: aws.String("tf-web"), Description: aws.String("Managed by Terraform"),
			TagSpecifications: []types.TagSpecification{{ResourceType: types.ResourceTypeSecurityGroup, Tags: []types.Tag{{Key: aws.String("Name"), Value: aws.String("tf-web")}}}}}))
		gid := aws.ToString(sg.GroupId)
		must[*sdk.DescribeSecurityGroupsOutput](t)(c.DescribeSecurityGroups(ctx, &sdk.DescribeSecurityGroupsInput{GroupIds: []string{gid}}))
		must[*sdk.RevokeSecurityGroupEgressOutput](t)(c.RevokeSecurityGroupEgress(ctx, &sdk.RevokeSecurityGroupEgressInput{
			GroupId: aws.String(gid), IpPermissions: []types.IpPermission{
				{IpProtocol: aws.String("-1"), FromPort: aws.Int32(0), ToPort: aws.Int32(0), IpRanges: []types.IpRange{{CidrIp: aws.String("0.0.0.0/0")}}},
				{IpProtocol: aws.String("-1"), FromPort: aws.Int32(0), ToPort: aws.Int32(0), Ipv6Ranges: []types.Ipv6Range{{CidrIpv6: aws.String("::/0")}}},
			}}))
		must[*sdk.AuthorizeSecurityGroupIngressOutput](t)(c.AuthorizeSecurityGroupIngress(ctx, &sdk.AuthorizeSecurityGroupIngressInput{
			GroupId: aws.String(gid), IpPermissions: []types.IpPermission{{IpProtocol: aws.String("tcp"), FromPort: aws.Int32(22),
				ToPort: aws.Int32(22), IpRanges: []types.IpRange{{CidrIp: aws.String("0.0.0.0/0")}}}}}))

		// aws_instance with vpc_security_group_ids, then the wait for running.
		run := must[*sdk.RunInstancesOutput](t)(c.RunInstances(ctx, &sdk.RunInstancesInput{
			ImageId: aws.String(e.image), InstanceType: "m1.small", KeyName: aws.String("tf-key"),
			MinCount: aws.Int32(1), MaxCount: aws.Int32(1), SecurityGroupIds: []string{gid},
			ClientToken: aws.String("terraform-20261130053000000000000001"), DisableApiTermination: aws.Bool(false),
			DisableApiStop: aws.Bool(false), Monitoring: &types.RunInstancesMonitoringEnabled{Enabled: aws.Bool(false)},
			TagSpecifications: []types.TagSpecification{{ResourceType: types.ResourceTypeInstance, Tags: []types.Tag{{Key: aws.String("Name"), Value: aws.String("tf-web")}}}},
		}))
		id := aws.ToString(run.Instances[0].InstanceId)
		e.observe(t, []string{id}, nodeapi.StateRunning)

		applied := readTFState(t, ctx, c, gid, id)
		if applied.State != "running" || applied.Ingress != "tcp 22-22 0.0.0.0/0" || applied.Egress != "" ||
			applied.InstanceGroups != gid || applied.InstanceSubnet == "" || applied.PrimaryInterface == "" ||
			applied.TerminationProtection != "false" || applied.ShutdownBehavior != "stop" || applied.InstanceTags != "Name=tf-web" ||
			applied.KeyTags != "Name=tf-key" || applied.GroupTags != "Name=tf-web" {
			t.Fatalf("after apply: %+v", applied)
		}
		// The second plan: a refresh that reads the same state.
		if again := readTFState(t, ctx, c, gid, id); again != applied {
			t.Fatalf("a refresh right after apply finds changes:\n apply %+v\n again %+v", applied, again)
		}

		// Destroy: instance (termination protection off first), group
		// (lingering interfaces looked up by group-id), key pair.
		must[*sdk.ModifyInstanceAttributeOutput](t)(c.ModifyInstanceAttribute(ctx, &sdk.ModifyInstanceAttributeInput{
			InstanceId: aws.String(id), DisableApiTermination: &types.AttributeBooleanValue{Value: aws.Bool(false)}}))
		must[*sdk.TerminateInstancesOutput](t)(c.TerminateInstances(ctx, &sdk.TerminateInstancesInput{InstanceIds: []string{id}}))
		e.observe(t, []string{id}, nodeapi.StateTerminated)
		di := must[*sdk.DescribeInstancesOutput](t)(c.DescribeInstances(ctx, &sdk.DescribeInstancesInput{InstanceIds: []string{id}}))
		if st := di.Reservations[0].Instances[0].State.Name; st != types.InstanceStateNameTerminated {
			t.Fatalf("instance %s after destroy", st)
		}
		enis := must[*sdk.DescribeNetworkInterfacesOutput](t)(c.DescribeNetworkInterfaces(ctx, &sdk.DescribeNetworkInterfacesInput{
			Filters: []types.Filter{{Name: aws.String("group-id"), Values: []string{gid}}}}))
		if len(enis.NetworkInterfaces) != 0 {
			t.Fatalf("lingering interfaces in %s: %+v", gid, enis.NetworkInterfaces)
		}
		must[*sdk.DeleteSecurityGroupOutput](t)(c.DeleteSecurityGroup(ctx, &sdk.DeleteSecurityGroupInput{GroupId: aws.String(gid)}))
		_, err = c.DescribeSecurityGroups(ctx, &sdk.DescribeSecurityGroupsInput{GroupIds: []string{gid}})
		wantCode(t, err, "InvalidGroup.NotFound")
		kps := must[*sdk.DescribeKeyPairsOutput](t)(c.DescribeKeyPairs(ctx, &sdk.DescribeKeyPairsInput{KeyNames: []string{"tf-key"}}))
		must[*sdk.DeleteKeyPairOutput](t)(c.DeleteKeyPair(ctx, &sdk.DeleteKeyPairInput{KeyPairId: kps.KeyPairs[0].KeyPairId}))
		_, err = c.DescribeKeyPairs(ctx, &sdk.DescribeKeyPairsInput{KeyNames: []string{"tf-key"}})
		wantCode(t, err, "InvalidKeyPair.NotFound")
	})
}

// readTFState reads the three resources as the provider's Read functions
// do and reduces them to what its state keeps.
func readTFState(t *testing.T, ctx context.Context, c *sdk.Client, gid, id string) tfState {
	t.Helper()
	var s tfState
	kp := must[*sdk.DescribeKeyPairsOutput](t)(c.DescribeKeyPairs(ctx, &sdk.DescribeKeyPairsInput{KeyNames: []string{"tf-key"}, IncludePublicKey: aws.Bool(true)})).KeyPairs[0]
	s.KeyFingerprint, s.KeyPublic, s.KeyTags = aws.ToString(kp.KeyFingerprint), aws.ToString(kp.PublicKey), tfTags(kp.Tags)

	g := must[*sdk.DescribeSecurityGroupsOutput](t)(c.DescribeSecurityGroups(ctx, &sdk.DescribeSecurityGroupsInput{GroupIds: []string{gid}})).SecurityGroups[0]
	s.GroupName, s.GroupDesc, s.GroupVpc = aws.ToString(g.GroupName), aws.ToString(g.Description), aws.ToString(g.VpcId)
	s.GroupTags = tfTags(g.Tags)
	perms := func(ps []types.IpPermission) string {
		var out []string
		for _, p := range ps {
			for _, r := range p.IpRanges {
				out = append(out, fmt.Sprintf("%s %d-%d %s", aws.ToString(p.IpProtocol), aws.ToInt32(p.FromPort), aws.ToInt32(p.ToPort), aws.ToString(r.CidrIp)))
			}
		}
		return strings.Join(out, ",")
	}
	s.Ingress, s.Egress = perms(g.IpPermissions), perms(g.IpPermissionsEgress)

	in := must[*sdk.DescribeInstancesOutput](t)(c.DescribeInstances(ctx, &sdk.DescribeInstancesInput{InstanceIds: []string{id}})).Reservations[0].Instances[0]
	s.InstanceType, s.InstanceKey, s.InstanceImage = string(in.InstanceType), aws.ToString(in.KeyName), aws.ToString(in.ImageId)
	var gids []string
	for _, sg := range in.SecurityGroups {
		gids = append(gids, aws.ToString(sg.GroupId))
	}
	s.InstanceGroups, s.InstanceTags = strings.Join(gids, ","), tfTags(in.Tags)
	s.InstanceSubnet, s.InstanceVpc = aws.ToString(in.SubnetId), aws.ToString(in.VpcId)
	s.InstanceZone, s.InstancePrivateIP = aws.ToString(in.Placement.AvailabilityZone), aws.ToString(in.PrivateIpAddress)
	s.State, s.SourceDestCheck = string(in.State.Name), fmt.Sprint(aws.ToBool(in.SourceDestCheck))
	for _, ni := range in.NetworkInterfaces {
		if aws.ToInt32(ni.Attachment.DeviceIndex) == 0 {
			s.PrimaryInterface = aws.ToString(ni.NetworkInterfaceId)
		}
	}
	attr := func(name types.InstanceAttributeName) *sdk.DescribeInstanceAttributeOutput {
		return must[*sdk.DescribeInstanceAttributeOutput](t)(c.DescribeInstanceAttribute(ctx, &sdk.DescribeInstanceAttributeInput{
			InstanceId: aws.String(id), Attribute: name}))
	}
	s.ShutdownBehavior = aws.ToString(attr(types.InstanceAttributeNameInstanceInitiatedShutdownBehavior).InstanceInitiatedShutdownBehavior.Value)
	s.TerminationProtection = fmt.Sprint(aws.ToBool(attr(types.InstanceAttributeNameDisableApiTermination).DisableApiTermination.Value))
	s.StopProt = fmt.Sprint(aws.ToBool(attr(types.InstanceAttributeNameDisableApiStop).DisableApiStop.Value))
	if ud := attr(types.InstanceAttributeNameUserData).UserData; ud != nil {
		s.UserData = aws.ToString(ud.Value)
	}
	return s
}

// openSSHPublicKey is an ed25519 key in OpenSSH's authorized_keys form, as
// Terraform configurations carry it (file("~/.ssh/id_ed25519.pub")).
func openSSHPublicKey(pub ed25519.PublicKey) []byte {
	var blob []byte
	for _, part := range [][]byte{[]byte("ssh-ed25519"), pub} {
		blob = binary.BigEndian.AppendUint32(blob, uint32(len(part)))
		blob = append(blob, part...)
	}
	return []byte("ssh-ed25519 " + base64.StdEncoding.EncodeToString(blob) + " terraform\n")
}

func tfTags(ts []types.Tag) string {
	var out []string
	for _, tg := range ts {
		out = append(out, aws.ToString(tg.Key)+"="+aws.ToString(tg.Value))
	}
	return strings.Join(out, ",")
}
