package controller

import (
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"

	"ironbark/internal/store"
	"ironbark/internal/store/storetest"
)

// TestEucalyptusAnswers sends what Eucalyptus-era clients send and checks
// they get Eucalyptus' own answers, in the shape they parse.
func TestEucalyptusAnswers(t *testing.T) {
	storetest.Each(t, Migrations(), func(t *testing.T, db *store.DB) {
		e := newTestEnv(t, db)

		// euca-describe-availability-zones verbose (euca2ools 3.4).
		out := e.mustPost(e.admin, "Action=DescribeAvailabilityZones&Version=2015-10-01&ZoneName.1=verbose")
		for _, want := range []string{
			"<item><zoneName>zone-a</zoneName><zoneState>available</zoneState>",
			"<item><zoneName>|- vm types</zoneName><zoneState>free / max   cpu   ram  disk</zoneState></item>",
			// zone-a: two nodes of 8 cores: 16 m1.small (1 cpu, 256 MiB, 5 GiB).
			"<item><zoneName>|- m1.small</zoneName><zoneState>0016 / 0016   1    256     5</zoneState></item>",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("verbose zones lack %s:\n%s", want, out)
			}
		}
		if strings.Contains(out, "messageSet") {
			t.Errorf("verbose zones in the messageSet form:\n%s", out)
		}
		if i, j := strings.Index(out, "<zoneName>zone-b</zoneName>"), strings.Index(out, "<zoneName>|- vm types</zoneName>"); i < 0 || j > i {
			t.Errorf("the vm types of zone-a must follow zone-a, before zone-b:\n%s", out)
		}

		// DescribeInstanceTypes: Eucalyptus' shape for its clients, AWS's for others.
		const eucaType = "<instanceTypeDetails><item><name>m1.small</name><cpu>1</cpu><memory>256</memory><disk>5</disk></item>"
		for _, tc := range []struct{ path, body, want string }{
			{"/services/compute", "Action=DescribeInstanceTypes&Version=2015-10-01", eucaType},
			{"/services/Eucalyptus", "Action=DescribeInstanceTypes&Version=2016-11-15", eucaType},
			{"/services/Eucalyptus/", "Action=DescribeInstanceTypes&Version=2016-11-15", eucaType},
			{"/services/compute", "Action=DescribeInstanceTypes&Version=2016-11-15&InstanceType.1=m1.small",
				"<instanceTypeSet><item><instanceType>m1.small</instanceType>"},
		} {
			status, out := e.postTo(tc.path, "ec2", e.alice, tc.body)
			if status != 200 || !strings.Contains(out, tc.want) {
				t.Errorf("%s %s: want %s, got %d %s", tc.path, tc.body, tc.want, status, out)
			}
		}

		// GetConsoleOutput carries a timestamp even before any output.
		inst := aws.ToString(e.run(e.client(e.alice), 1, "").Instances[0].InstanceId)
		out = e.mustPost(e.alice, "Action=GetConsoleOutput&InstanceId="+inst+"&Version=2015-10-01")
		if !strings.Contains(out, "<timestamp>") {
			t.Errorf("GetConsoleOutput without a timestamp:\n%s", out)
		}

		// An instance-store image names its ephemeral disk by virtual name
		// and lists no bare root device (which reads as an EBS volume).
		out = e.mustPost(e.alice, "Action=DescribeImages&ImageId.1="+e.image+"&Version=2016-11-15")
		bdm := between(out, "<blockDeviceMapping>", "</blockDeviceMapping>")
		if bdm != "<item><deviceName>/dev/sdb</deviceName><virtualName>ephemeral0</virtualName></item>" ||
			!strings.Contains(out, "<rootDeviceType>instance-store</rootDeviceType><rootDeviceName>/dev/sda1</rootDeviceName>") {
			t.Errorf("instance-store image mapping:\n%s", out)
		}
	})
}
