package controller

import (
	"strings"
	"testing"

	"ironbark/internal/store"
	"ironbark/internal/store/storetest"
)

// TestAutomationToolsFirstCalls sends, byte for byte, the calls that
// configuration-management modules and infrastructure-as-code providers
// make before and around creating anything: STS GetCallerIdentity, the
// default VPC and subnets, network interfaces, the default egress rule,
// instance attributes.
func TestAutomationToolsFirstCalls(t *testing.T) {
	storetest.Each(t, Migrations(), func(t *testing.T, db *store.DB) {
		e := newTestEnv(t, db)
		const v = "&Version=2016-11-15"
		wantIn := func(what, out string, wants ...string) {
			t.Helper()
			for _, w := range wants {
				if !strings.Contains(out, w) {
					t.Errorf("%s lacks %s:\n%s", what, w, out)
				}
			}
		}
		wantErr := func(body, code string) {
			t.Helper()
			status, out := e.post(e.alice, body)
			if status != 400 || !strings.Contains(out, "<Code>"+code+"</Code>") {
				t.Errorf("%s: want %s, got %d %s", body, code, status, out)
			}
		}

		// STS on the same endpoint, signed for sts (boto3's sts client).
		status, out := e.postTo("/", "sts", e.alice, "Action=GetCallerIdentity&Version=2011-06-15")
		if status != 200 {
			t.Fatalf("GetCallerIdentity: %d %s", status, out)
		}
		wantIn("GetCallerIdentity", out,
			`<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><GetCallerIdentityResult>`,
			"<Arn>arn:aws:iam::"+e.alice.ID+":root</Arn><UserId>"+e.alice.ID+"</UserId><Account>"+e.alice.ID+"</Account>",
			"</GetCallerIdentityResult><ResponseMetadata><RequestId>")
		status, out = e.postTo("/", "sts", e.alice, "Action=GetCallerIdentity&Version=2011-06-15&Bogus=1")
		if status != 400 || !strings.Contains(out, `<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type><Code>UnknownParameter</Code>`) {
			t.Errorf("STS error envelope: %d %s", status, out)
		}
		status, out = e.postTo("/", "sts", Account{AccessKey: e.alice.AccessKey, SecretKey: "wrong"}, "Action=GetCallerIdentity&Version=2011-06-15")
		if status != 403 || !strings.Contains(out, "<ErrorResponse") || !strings.Contains(out, "<Code>SignatureDoesNotMatch</Code>") {
			t.Errorf("STS signature error: %d %s", status, out)
		}
		status, _ = e.postTo("/", "sts", e.alice, "Action=DescribeInstances&Version=2011-06-15")
		if status != 400 {
			t.Errorf("an EC2 action signed for STS: %d", status)
		}

		// The default VPC and one default subnet per zone.
		out = e.mustPost(e.alice, "Action=DescribeVpcs&Filter.1.Name=isDefault&Filter.1.Value.1=true"+v)
		vpc := between(out, "<vpcId>", "</vpcId>")
		wantIn("DescribeVpcs", out, "<isDefault>true</isDefault>", "<ownerId>"+e.alice.ID+"</ownerId>", "<state>available</state>")
		if !strings.HasPrefix(vpc, "vpc-") {
			t.Fatalf("no default VPC:\n%s", out)
		}
		out = e.mustPost(e.alice, "Action=DescribeSubnets&Filter.1.Name=availability-zone&Filter.1.Value.1=zone-b"+
			"&Filter.2.Name=default-for-az&Filter.2.Value.1=true&Filter.3.Name=vpc-id&Filter.3.Value.1="+vpc+v)
		if strings.Count(out, "<subnetId>") != 1 {
			t.Fatalf("zone-b's default subnet:\n%s", out)
		}
		subnetB := between(out, "<subnetId>", "</subnetId>")
		wantIn("DescribeSubnets", out, "<availabilityZone>zone-b</availabilityZone>", "<defaultForAz>true</defaultForAz>", "<vpcId>"+vpc+"</vpcId>")
		out = e.mustPost(e.alice, "Action=DescribeSubnets"+v)
		if strings.Count(out, "<subnetId>") != 2 {
			t.Errorf("want a default subnet in each of 2 zones:\n%s", out)
		}
		wantErr("Action=DescribeSubnets&SubnetId.1=subnet-00000000"+v, "InvalidSubnetID.NotFound")
		out = e.mustPost(e.alice, "Action=DescribeAccountAttributes&AttributeName.1=supported-platforms&AttributeName.2=default-vpc"+v)
		wantIn("DescribeAccountAttributes", out,
			"<item><attributeName>supported-platforms</attributeName><attributeValueSet><item><attributeValue>VPC</attributeValue></item></attributeValueSet></item>",
			"<attributeValue>"+vpc+"</attributeValue>")

		// A group as Terraform makes one: it comes with EC2's allow-all
		// egress rule, which the provider revokes (IPv4 and IPv6) at once.
		out = e.mustPost(e.alice, "Action=CreateSecurityGroup&GroupName=web&GroupDescription=web"+v)
		web := between(out, "<groupId>", "</groupId>")
		out = e.mustPost(e.alice, "Action=DescribeSecurityGroups&Filter.1.Name=vpc-id&Filter.1.Value.1="+vpc+
			"&Filter.2.Name=group-name&Filter.2.Value.1=web"+v)
		wantIn("group by vpc-id", out, "<groupId>"+web+"</groupId>", "<vpcId>"+vpc+"</vpcId>")
		wantErr("Action=CreateSecurityGroup&GroupName=x&GroupDescription=x&VpcId=vpc-00000000"+v, "InvalidVpcID.NotFound")
		out = e.mustPost(e.alice, "Action=DescribeSecurityGroups&GroupId.1="+web+v)
		wantIn("new group", out, "<ipPermissionsEgress><item><ipProtocol>-1</ipProtocol><groups></groups><ipRanges><item><cidrIp>0.0.0.0/0</cidrIp></item></ipRanges></item></ipPermissionsEgress>")
		e.mustPost(e.alice, "Action=RevokeSecurityGroupEgress&GroupId="+web+"&IpPermissions.1.FromPort=0&IpPermissions.1.IpProtocol=-1"+
			"&IpPermissions.1.IpRanges.1.CidrIp=0.0.0.0%2F0&IpPermissions.1.Ipv6Ranges.1.CidrIpv6=%3A%3A%2F0&IpPermissions.1.ToPort=0"+v)
		e.mustPost(e.alice, "Action=RevokeSecurityGroupEgress&GroupId="+web+"&IpPermissions.1.IpProtocol=-1&IpPermissions.1.Ipv6Ranges.1.CidrIpv6=%3A%3A%2F0"+v)
		out = e.mustPost(e.alice, "Action=DescribeSecurityGroups&GroupId.1="+web+v)
		wantIn("group after the revoke", out, "<ipPermissionsEgress></ipPermissionsEgress>")
		wantErr("Action=AuthorizeSecurityGroupIngress&GroupId="+web+"&IpPermissions.1.IpProtocol=tcp&IpPermissions.1.FromPort=22"+
			"&IpPermissions.1.ToPort=22&IpPermissions.1.Ipv6Ranges.1.CidrIpv6=%3A%3A%2F0"+v, "UnsupportedOperation")

		// RunInstances with everything under NetworkInterface.1 (Ansible).
		run := "Action=RunInstances&ImageId=" + e.image + "&MinCount=1&MaxCount=1&InstanceType=m1.small"
		out = e.mustPost(e.alice, run+"&NetworkInterface.1.DeviceIndex=0&NetworkInterface.1.SubnetId="+subnetB+
			"&NetworkInterface.1.SecurityGroupId.1="+web+v)
		inst := between(out, "<instanceId>", "</instanceId>")
		wantIn("RunInstances with a network interface", out, "<availabilityZone>zone-b</availabilityZone>",
			"<groupId>"+web+"</groupId>", "<subnetId>"+subnetB+"</subnetId>", "<vpcId>"+vpc+"</vpcId>")
		if strings.Contains(out, "<groupName>default</groupName>") {
			t.Errorf("the instance landed in the default group too:\n%s", out)
		}
		before := tableCounts(t, db)["instances"]
		wantErr(run+"&NetworkInterface.1.DeviceIndex=0&NetworkInterface.1.DeleteOnTermination=false"+v, "UnsupportedOperation")
		wantErr(run+"&NetworkInterface.1.DeviceIndex=0&NetworkInterface.1.SecurityGroupId.1="+web+"&SecurityGroupId.1="+web+v, "InvalidParameterCombination")
		wantErr(run+"&NetworkInterface.1.DeviceIndex=1"+v, "InvalidParameterValue")
		wantErr(run+"&SubnetId=subnet-00000000"+v, "InvalidSubnetID.NotFound")
		wantErr(run+"&SubnetId="+subnetB+"&Placement.AvailabilityZone=zone-a"+v, "InvalidParameterCombination")
		wantErr(run+"&Monitoring.Enabled=true"+v, "UnsupportedOperation")
		wantErr(run+"&Bogus=1"+v, "UnknownParameter")
		if after := tableCounts(t, db)["instances"]; after != before {
			t.Fatalf("refused launches made instances: %d -> %d", before, after)
		}

		// A public address at launch comes from the pool, belongs to the
		// instance (not listed as an allocation) and goes back when it ends.
		out = e.mustPost(e.alice, run+"&NetworkInterface.1.DeviceIndex=0&NetworkInterface.1.AssociatePublicIpAddress=true"+v)
		pubInst, pubIP := between(out, "<instanceId>", "</instanceId>"), between(out, "<ipAddress>", "</ipAddress>")
		if !strings.HasPrefix(pubIP, "198.51.100.") || !strings.Contains(out, "<association><publicIp>"+pubIP+"</publicIp>") {
			t.Fatalf("no public address from the pool at launch:\n%s", out)
		}
		if out := e.mustPost(e.alice, "Action=DescribeAddresses"+v); strings.Contains(out, pubIP) {
			t.Errorf("a launch address listed as an allocation:\n%s", out)
		}
		wantErr("Action=ReleaseAddress&PublicIp="+pubIP+v, "InvalidAddress.NotFound")
		e.mustPost(e.alice, "Action=TerminateInstances&InstanceId.1="+pubInst+v)
		if n := tableCounts(t, db)["addresses"]; n != 0 {
			t.Errorf("the launch address outlived its instance: %d addresses", n)
		}

		// Instances and their interface, found by VPC, subnet and group.
		out = e.mustPost(e.alice, "Action=DescribeInstances&Filter.1.Name=subnet-id&Filter.1.Value.1="+subnetB+
			"&Filter.2.Name=vpc-id&Filter.2.Value.1="+vpc+v)
		if strings.Count(out, "<amiLaunchIndex>") != 1 || !strings.Contains(out, inst) {
			t.Errorf("instances by subnet-id and vpc-id:\n%s", out)
		}
		out = e.mustPost(e.alice, "Action=DescribeNetworkInterfaces&Filter.1.Name=group-id&Filter.1.Value.1="+web+v)
		wantIn("DescribeNetworkInterfaces group-id", out, "<networkInterfaceId>"+networkInterfaceID(inst)+"</networkInterfaceId>",
			"<instanceId>"+inst+"</instanceId>", "<deviceIndex>0</deviceIndex>", "<status>in-use</status>")
		out = e.mustPost(e.alice, "Action=DescribeNetworkInterfaces&Filter.1.Name=group-id&Filter.1.Value.1=sg-00000000"+v)
		if strings.Contains(out, "<item>") {
			t.Errorf("a group no instance is in has interfaces:\n%s", out)
		}

		// Instance attributes, with termination protection honoured.
		for attr, want := range map[string]string{
			"disableApiTermination":             "<disableApiTermination><value>false</value></disableApiTermination>",
			"disableApiStop":                    "<disableApiStop><value>false</value></disableApiStop>",
			"instanceInitiatedShutdownBehavior": "<instanceInitiatedShutdownBehavior><value>stop</value></instanceInitiatedShutdownBehavior>",
			"instanceType":                      "<instanceType><value>m1.small</value></instanceType>",
			"userData":                          "<userData></userData>",
			"groupSet":                          "<groupSet><item><groupId>" + web + "</groupId></item></groupSet>",
		} {
			out := e.mustPost(e.alice, "Action=DescribeInstanceAttribute&Attribute="+attr+"&InstanceId="+inst+v)
			wantIn("DescribeInstanceAttribute "+attr, out, "<instanceId>"+inst+"</instanceId>"+want)
		}
		e.mustPost(e.alice, "Action=ModifyInstanceAttribute&DisableApiTermination.Value=true&InstanceId="+inst+v)
		wantErr("Action=TerminateInstances&InstanceId.1="+inst+v, "OperationNotPermitted")
		e.mustPost(e.alice, "Action=ModifyInstanceAttribute&Attribute=disableApiTermination&Value=false&InstanceId="+inst+v)
		e.mustPost(e.alice, "Action=TerminateInstances&InstanceId.1="+inst+v)
		wantErr("Action=ModifyInstanceAttribute&Bogus.Value=1&InstanceId="+inst+v, "UnknownParameter")
		wantErr("Action=DescribeInstanceAttribute&Attribute=nope&InstanceId="+inst+v, "InvalidParameterValue")

		// Launch-time attributes.
		out = e.mustPost(e.alice, run+"&DisableApiTermination=true&InstanceInitiatedShutdownBehavior=terminate"+v)
		prot := between(out, "<instanceId>", "</instanceId>")
		out = e.mustPost(e.alice, "Action=DescribeInstanceAttribute&Attribute=instanceInitiatedShutdownBehavior&InstanceId="+prot+v)
		wantIn("shutdown behaviour set at launch", out, "<value>terminate</value>")
		wantErr("Action=TerminateInstances&InstanceId.1="+prot+v, "OperationNotPermitted")

		// A guest that powers itself off: stopped, or terminated when it
		// was launched with InstanceInitiatedShutdownBehavior=terminate
		// (termination protection guards only the API, as on EC2).
		plain := between(e.mustPost(e.alice, run+v), "<instanceId>", "</instanceId>")
		e.observe(t, []string{prot, plain}, "running")
		e.observe(t, []string{prot, plain}, "stopped")
		state := func(id string) string {
			return between(between(e.mustPost(e.alice, "Action=DescribeInstances&InstanceId.1="+id+v), "<instanceState>", "</instanceState>"), "<name>", "</name>")
		}
		if got := state(plain); got != "stopped" {
			t.Errorf("a guest shutdown with behaviour stop: %s", got)
		}
		if got := state(prot); got != "shutting-down" {
			t.Errorf("a guest shutdown with behaviour terminate: %s", got)
		}
		e.observe(t, []string{prot}, "terminated")
		if got := state(prot); got != "terminated" {
			t.Errorf("after the node removed it: %s", got)
		}
	})
}
