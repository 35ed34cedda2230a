package controller

import (
	"fmt"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"

	"ironbark/internal/store"
	"ironbark/internal/store/storetest"
)

// TestDescribePipeline checks what every Describe action does the same
// way: requested ids first (an unknown or invisible id is the resource's
// NotFound, whatever the filters), then filters (which may leave nothing,
// never an error), with the filters' sizes capped.
func TestDescribePipeline(t *testing.T) {
	storetest.Each(t, Migrations(), func(t *testing.T, db *store.DB) {
		e := newTestEnv(t, db)
		alice := e.client(e.alice)
		inst := aws.ToString(e.run(alice, 1, "").Instances[0].InstanceId)
		bobInst := aws.ToString(e.run(e.client(e.bob), 1, "").Instances[0].InstanceId)
		e.mustPost(e.alice, "Action=CreateKeyPair&KeyName=a&Version=2016-11-15")
		e.mustPost(e.alice, "Action=AllocateAddress&Version=2016-11-15")
		groups := e.mustPost(e.alice, "Action=DescribeSecurityGroups&Version=2016-11-15")
		sg := between(groups, "<groupId>", "</groupId>")
		const v = "&Version=2016-11-15"
		noMatch := "&Filter.1.Name=tag:none&Filter.1.Value.1=none"

		for _, tc := range []struct {
			name, body, code string // code "": 200 with no items
		}{
			// An existing id with a filter that leaves it out: an empty answer.
			{"key pair filtered out", "Action=DescribeKeyPairs&KeyName.1=a" + noMatch, ""},
			{"instance filtered out", "Action=DescribeInstances&InstanceId.1=" + inst + noMatch, ""},
			{"group filtered out", "Action=DescribeSecurityGroups&GroupId.1=" + sg + noMatch, ""},
			{"image filtered out", "Action=DescribeImages&ImageId.1=" + e.image + noMatch, ""},
			// An unknown id is NotFound, with or without filters.
			{"unknown key pair", "Action=DescribeKeyPairs&KeyName.1=nope" + noMatch, "InvalidKeyPair.NotFound"},
			{"unknown key pair id", "Action=DescribeKeyPairs&KeyPairId.1=key-0123456789abcdef0", "InvalidKeyPair.NotFound"},
			{"unknown group with filter", "Action=DescribeSecurityGroups&GroupId.1=sg-00000000" + noMatch, "InvalidGroup.NotFound"},
			{"unknown group name with filter", "Action=DescribeSecurityGroups&GroupName.1=nope" + noMatch, "InvalidGroup.NotFound"},
			{"unknown address", "Action=DescribeAddresses&PublicIp.1=192.0.2.1" + noMatch, "InvalidAddress.NotFound"},
			{"unknown allocation", "Action=DescribeAddresses&AllocationId.1=eipalloc-00000000", "InvalidAllocationID.NotFound"},
			{"unknown image", "Action=DescribeImages&ImageId.1=emi-00000000" + noMatch, "InvalidAMIID.NotFound"},
			// Another account's instance is as unknown as a missing one.
			{"invisible instance", "Action=DescribeInstances&InstanceId.1=" + bobInst + noMatch, "InvalidInstanceID.NotFound"},
			{"invisible instance status", "Action=DescribeInstanceStatus&InstanceId.0=" + bobInst, "InvalidInstanceID.NotFound"},
			// Filters are checked and capped.
			{"unknown filter", "Action=DescribeKeyPairs&Filter.1.Name=nope&Filter.1.Value.1=x", "InvalidParameterValue"},
			{"too many values", "Action=DescribeInstances&Filter.1.Name=tag:a" + values(201, 1), "InvalidParameterValue"},
			{"value too long", "Action=DescribeImages&Filter.1.Name=name" + values(1, 2000), "InvalidParameterValue"},
			{"too many filters", "Action=DescribeTags" + filters(51), "InvalidParameterValue"},
		} {
			status, out := e.post(e.alice, tc.body+v)
			switch {
			case tc.code == "" && (status != 200 || strings.Contains(out, "<item>")):
				t.Errorf("%s: want an empty answer, got %d %s", tc.name, status, out)
			case tc.code != "" && (status != 400 || !strings.Contains(out, "<Code>"+tc.code+"</Code>")):
				t.Errorf("%s: want %s, got %d %s", tc.name, tc.code, status, out)
			}
		}

		// 200 values of 1 KiB each are within the limits and still match.
		out := e.mustPost(e.alice, "Action=DescribeInstances&Filter.1.Name=instance-id"+values(199, 1000)+
			"&Filter.1.Value.200="+inst+v)
		if !strings.Contains(out, inst) {
			t.Fatalf("a filter of 200 values lost the match:\n%s", out)
		}
	})
}

func values(n, size int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "&Filter.1.Value.%d=%s", i+1, strings.Repeat("*a", size/2+1)[:size])
	}
	return b.String()
}

func filters(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "&Filter.%d.Name=key&Filter.%d.Value.1=x", i+1, i+1)
	}
	return b.String()
}

// between returns the text between the first open and the close after it.
func between(s, open, close string) string {
	_, rest, _ := strings.Cut(s, open)
	v, _, _ := strings.Cut(rest, close)
	return v
}
