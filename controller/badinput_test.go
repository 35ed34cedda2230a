package controller

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"

	"ironbark/controller/ec2"
	"ironbark/internal/store"
	"ironbark/internal/store/storetest"
)

// TestBadInputChangesNothing sends malformed and forbidden calls straight
// to the actions and checks each gets its EC2 error and leaves every
// table as it was.
func TestBadInputChangesNothing(t *testing.T) {
	storetest.Each(t, Migrations(), func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		e := newTestEnv(t, db)
		alice := ec2.Principal{AccountID: e.alice.ID, AccessKey: e.alice.AccessKey}
		bob := ec2.Principal{AccountID: e.bob.ID, AccessKey: e.bob.AccessKey}
		call := func(p ec2.Principal, action string, kv ...string) error {
			v := url.Values{}
			for i := 0; i+1 < len(kv); i += 2 {
				v.Add(kv[i], kv[i+1])
			}
			_, err := e.cloud.ServeEC2(ctx, &ec2.Request{Action: action, Version: "2016-11-15", Params: v, Principal: p})
			return err
		}
		// Things for bob to poke at.
		if err := call(alice, "CreateKeyPair", "KeyName", "a"); err != nil {
			t.Fatal(err)
		}
		if err := call(alice, "RunInstances", "ImageId", e.image, "MinCount", "1", "MaxCount", "1"); err != nil {
			t.Fatal(err)
		}
		var inst, sg string
		if err := db.QueryRow(ctx, `SELECT id FROM instances`).Scan(&inst); err != nil {
			t.Fatal(err)
		}
		if err := db.QueryRow(ctx, `SELECT id FROM security_groups WHERE account_id = ?`, e.alice.ID).Scan(&sg); err != nil {
			t.Fatal(err)
		}
		// Bob's default group exists before we count.
		if err := call(bob, "DescribeSecurityGroups"); err != nil {
			t.Fatal(err)
		}
		before := tableCounts(t, db)
		var stateBefore string
		_ = db.QueryRow(ctx, `SELECT state || desired FROM instances`).Scan(&stateBefore)

		cases := []struct {
			p      ec2.Principal
			action string
			kv     []string
			code   string
		}{
			{alice, "NoSuchAction", nil, "InvalidAction"},
			{alice, "RunInstances", []string{"ImageId", e.image, "MinCount", "one", "MaxCount", "1"}, "InvalidParameterValue"},
			{alice, "RunInstances", []string{"ImageId", e.image, "MaxCount", "1"}, "MissingParameter"},
			{alice, "RunInstances", []string{"ImageId", e.image, "MinCount", "1", "MaxCount", "5000"}, "InstanceLimitExceeded"},
			{alice, "RunInstances", []string{"ImageId", e.image, "MinCount", "1", "MaxCount", "1",
				"UserData", base64.StdEncoding.EncodeToString(make([]byte, 20000))}, "InvalidParameterValue"},
			{alice, "RunInstances", []string{"ImageId", e.image, "MinCount", "1", "MaxCount", "1", "ClientToken", strings.Repeat("t", 65)}, "InvalidParameterValue"},
			{alice, "DescribeInstances", []string{"InstanceId.1", "x-123"}, "InvalidInstanceID.Malformed"},
			{alice, "DescribeInstances", []string{"MaxResults", "3"}, "InvalidParameterValue"},
			{alice, "DescribeInstances", []string{"InstanceId.x", "i-1"}, "UnknownParameter"},
			{alice, "TerminateInstances", nil, "MissingParameter"},
			{alice, "TerminateInstances", []string{"InstanceId.1", inst, "InstanceId.2", "i-00000000000000000"}, "InvalidInstanceID.NotFound"},
			{bob, "TerminateInstances", []string{"InstanceId.1", inst}, "InvalidInstanceID.NotFound"},
			{bob, "StopInstances", []string{"InstanceId.1", inst}, "InvalidInstanceID.NotFound"},
			{bob, "RebootInstances", []string{"InstanceId.1", inst}, "InvalidInstanceID.NotFound"},
			{alice, "StartInstances", []string{"InstanceId.1", inst}, ""}, // pending: a no-op
			{alice, "CreateKeyPair", []string{"KeyName", "a"}, "InvalidKeyPair.Duplicate"},
			{alice, "CreateKeyPair", []string{"KeyName", "b", "KeyType", "dsa"}, "InvalidParameterValue"},
			{alice, "CreateKeyPair", []string{"KeyName", "bad\x01name"}, "InvalidParameterValue"},
			{alice, "ImportKeyPair", []string{"KeyName", "c", "PublicKeyMaterial", "bm90IGEga2V5"}, "InvalidKey.Format"},
			{alice, "CreateSecurityGroup", []string{"GroupName", "x"}, "MissingParameter"},
			{bob, "DeleteSecurityGroup", []string{"GroupId", sg}, "InvalidGroup.NotFound"},
			{bob, "AuthorizeSecurityGroupIngress", []string{"GroupId", sg, "IpProtocol", "tcp", "FromPort", "22", "ToPort", "22", "CidrIp", "0.0.0.0/0"}, "InvalidGroup.NotFound"},
			{alice, "AuthorizeSecurityGroupIngress", []string{"GroupId", sg, "IpProtocol", "tcp", "FromPort", "22", "ToPort", "99999", "CidrIp", "0.0.0.0/0"}, "InvalidParameterValue"},
			{alice, "AuthorizeSecurityGroupIngress", []string{"GroupId", sg, "IpProtocol", "nope", "CidrIp", "0.0.0.0/0"}, "InvalidParameterValue"},
			{alice, "AssociateAddress", []string{"InstanceId", inst, "AllocationId", "eipalloc-00000000000000000"}, "InvalidAllocationID.NotFound"},
			{alice, "ReleaseAddress", []string{"PublicIp", "203.0.113.9"}, "InvalidAddress.NotFound"},
			{alice, "AllocateAddress", []string{"Domain", "moon"}, "InvalidParameterValue"},
			{alice, "RegisterImage", []string{"Name", "x"}, "MissingParameter"},
			{alice, "RegisterImage", []string{"Name", "ok-name", "ImageLocation", "sha256:zz"}, "InvalidParameterValue"},
			{alice, "RegisterImage", []string{"Name", "ok-name", "ImageLocation", "b/m.xml", "Architecture", "sparc"}, "InvalidParameterValue"},
			{alice, "RegisterImage", []string{"Name", "ok-name", "ImageLocation", "b/m.xml", "KernelId", "eki-00000000"}, "InvalidAMIID.NotFound"},
			{bob, "DeregisterImage", []string{"ImageId", e.image}, "InvalidAMIID.NotFound"},
			{alice, "ModifyImageAttribute", []string{"ImageId", e.image, "LaunchPermission.Add.1.Group", "all"}, "InvalidAMIID.NotFound"},
			{e.adminPrincipal(), "ModifyImageAttribute", []string{"ImageId", e.image, "LaunchPermission.Add.1.UserId", "12"}, "InvalidAMIAttributeItemValue"},
			{alice, "CreateTags", []string{"ResourceId.1", inst, "Tag.1.Key", "aws:x", "Tag.1.Value", "y"}, "InvalidParameterValue"},
			{bob, "CreateTags", []string{"ResourceId.1", inst, "Tag.1.Key", "k", "Tag.1.Value", "v"}, "InvalidID"},
			{alice, "CreateTags", []string{"ResourceId.1", "vol-1", "Tag.1.Key", "k", "Tag.1.Value", "v"}, "InvalidID"},
			{alice, "DescribeTags", []string{"Filter.1.Name", "colour", "Filter.1.Value.1", "red"}, "InvalidParameterValue"},
			{alice, "DescribeImages", []string{"NextToken", "garbage"}, "InvalidParameterValue"},
			{alice, "DescribeAvailabilityZones", []string{"ZoneName.1", "nowhere"}, "InvalidParameterValue"},
			{alice, "GetConsoleOutput", []string{"InstanceId", "i-00000000000000000"}, "InvalidInstanceID.NotFound"},
		}
		for i, tc := range cases {
			err := call(tc.p, tc.action, tc.kv...)
			t.Run(fmt.Sprintf("%d-%s", i, tc.action), func(t *testing.T) {
				if tc.code == "" {
					if err != nil {
						t.Fatalf("want success, got %v", err)
					}
					return
				}
				var ae *ec2.Error
				if !errors.As(err, &ae) || ae.Code != tc.code {
					t.Fatalf("want %s, got %v", tc.code, err)
				}
			})
		}
		if after := tableCounts(t, db); fmt.Sprint(before) != fmt.Sprint(after) {
			t.Fatalf("bad requests changed the store:\nbefore %v\nafter  %v", before, after)
		}
		var stateAfter string
		_ = db.QueryRow(ctx, `SELECT state || desired FROM instances`).Scan(&stateAfter)
		if stateAfter != stateBefore {
			t.Fatalf("instance state %s -> %s", stateBefore, stateAfter)
		}
	})
}

func (e *testEnv) adminPrincipal() ec2.Principal {
	return ec2.Principal{AccountID: e.admin.ID, AccessKey: e.admin.AccessKey, Admin: true}
}

// FuzzImportKey feeds ImportKeyPair's parser arbitrary material: it must
// never panic, and whatever it accepts must have a fingerprint.
func FuzzImportKey(f *testing.F) {
	ed, _ := generateKey("ed25519", "seed")
	rsaKey, _ := generateKey("rsa", "seed")
	f.Add([]byte(ed.publicKey))
	f.Add([]byte(rsaKey.publicKey))
	f.Add([]byte("---- BEGIN SSH2 PUBLIC KEY ----\nComment: \"x\"\nAAAAC3NzaC1lZDI1NTE5AAAAIO\n---- END SSH2 PUBLIC KEY ----\n"))
	f.Add([]byte("-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA\n-----END PUBLIC KEY-----\n"))
	f.Add([]byte("ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQ== x"))
	f.Fuzz(func(t *testing.T, material []byte) {
		k, err := importKey(material, "fuzz")
		if err == nil && (k.fingerprint == "" || k.publicKey == "") {
			t.Fatalf("accepted %q without a fingerprint", material)
		}
	})
}
