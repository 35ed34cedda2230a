package controller

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	sdk "github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"ironbark/internal/store"
	"ironbark/internal/store/storetest"
)

func TestAccountsIsolated(t *testing.T) {
	storetest.Each(t, Migrations(), func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		e := newTestEnv(t, db)
		alice, bob, admin := e.client(e.alice), e.client(e.bob), e.client(e.admin)
		aliceIDs := runIDs(e.run(alice, 2, ""))
		bobIDs := runIDs(e.run(bob, 1, ""))

		if got := instanceIDs(must[*sdk.DescribeInstancesOutput](t)(bob.DescribeInstances(ctx, &sdk.DescribeInstancesInput{})).Reservations); len(got) != 1 || got[0] != bobIDs[0] {
			t.Fatalf("bob sees %v", got)
		}
		if got := instanceIDs(must[*sdk.DescribeInstancesOutput](t)(admin.DescribeInstances(ctx, &sdk.DescribeInstancesInput{})).Reservations); len(got) != 3 {
			t.Fatalf("admin sees %v", got)
		}
		_, err := bob.DescribeInstances(ctx, &sdk.DescribeInstancesInput{InstanceIds: aliceIDs[:1]})
		wantCode(t, err, "InvalidInstanceID.NotFound")
		before := tableCounts(t, db)
		_, err = bob.TerminateInstances(ctx, &sdk.TerminateInstancesInput{InstanceIds: []string{bobIDs[0], aliceIDs[0]}})
		wantCode(t, err, "InvalidInstanceID.NotFound")
		if e.state(t, aliceIDs[0]) != "pending" || e.state(t, bobIDs[0]) != "pending" {
			t.Fatal("a failed cross-account terminate changed an instance")
		}
		_, err = bob.GetConsoleOutput(ctx, &sdk.GetConsoleOutputInput{InstanceId: aws.String(aliceIDs[0])})
		wantCode(t, err, "InvalidInstanceID.NotFound")
		_, err = bob.CreateTags(ctx, &sdk.CreateTagsInput{Resources: aliceIDs[:1], Tags: []types.Tag{{Key: aws.String("x"), Value: aws.String("y")}}})
		wantCode(t, err, "InvalidID")

		// Private images: alice's image is hers until she shares it. (She
		// registers it from the public image's blob, which she may read.)
		img := must[*sdk.RegisterImageOutput](t)(alice.RegisterImage(ctx, &sdk.RegisterImageInput{
			Name: aws.String("alice-image"), ImageLocation: aws.String("sha256:" + hexOf(0x0f))}))
		id := aws.ToString(img.ImageId)
		_, err = bob.RunInstances(ctx, &sdk.RunInstancesInput{ImageId: img.ImageId, MinCount: aws.Int32(1), MaxCount: aws.Int32(1)})
		wantCode(t, err, "InvalidAMIID.NotFound")
		_, err = bob.ModifyImageAttribute(ctx, &sdk.ModifyImageAttributeInput{ImageId: img.ImageId,
			LaunchPermission: &types.LaunchPermissionModifications{Add: []types.LaunchPermission{{Group: types.PermissionGroupAll}}}})
		wantCode(t, err, "InvalidAMIID.NotFound")
		if after := tableCounts(t, db); before["instances"] != after["instances"] || before["tags"] != after["tags"] {
			t.Fatalf("failed cross-account calls changed the store: %v -> %v", before, after)
		}
		must[*sdk.ModifyImageAttributeOutput](t)(alice.ModifyImageAttribute(ctx, &sdk.ModifyImageAttributeInput{ImageId: img.ImageId,
			LaunchPermission: &types.LaunchPermissionModifications{Add: []types.LaunchPermission{{UserId: aws.String(e.bob.ID)}}}}))
		attr := must[*sdk.DescribeImageAttributeOutput](t)(alice.DescribeImageAttribute(ctx, &sdk.DescribeImageAttributeInput{
			ImageId: img.ImageId, Attribute: types.ImageAttributeNameLaunchPermission}))
		if len(attr.LaunchPermissions) != 1 || aws.ToString(attr.LaunchPermissions[0].UserId) != e.bob.ID {
			t.Fatalf("launch permissions: %+v", attr.LaunchPermissions)
		}
		if imgs := must[*sdk.DescribeImagesOutput](t)(bob.DescribeImages(ctx, &sdk.DescribeImagesInput{ImageIds: []string{id}})); len(imgs.Images) != 1 {
			t.Fatal("bob cannot see the shared image")
		}
		must[*sdk.RunInstancesOutput](t)(bob.RunInstances(ctx, &sdk.RunInstancesInput{ImageId: img.ImageId, MinCount: aws.Int32(1), MaxCount: aws.Int32(1)}))
		must[*sdk.ResetImageAttributeOutput](t)(alice.ResetImageAttribute(ctx, &sdk.ResetImageAttributeInput{ImageId: img.ImageId,
			Attribute: types.ResetImageAttributeNameLaunchPermission}))
		_, err = bob.DescribeImages(ctx, &sdk.DescribeImagesInput{ImageIds: []string{id}})
		wantCode(t, err, "InvalidAMIID.NotFound")
		mine := must[*sdk.DescribeImagesOutput](t)(alice.DescribeImages(ctx, &sdk.DescribeImagesInput{Owners: []string{"self"}}))
		if len(mine.Images) != 1 || aws.ToString(mine.Images[0].ImageId) != id || aws.ToString(mine.Images[0].OwnerId) != e.alice.ID {
			t.Fatalf("alice's own images: %+v", mine.Images)
		}
		must[*sdk.DeregisterImageOutput](t)(alice.DeregisterImage(ctx, &sdk.DeregisterImageInput{ImageId: img.ImageId}))
		_, err = alice.DescribeImages(ctx, &sdk.DescribeImagesInput{ImageIds: []string{id}})
		wantCode(t, err, "InvalidAMIID.NotFound")
	})
}

// Registering by a sha256: location needs read access to the blob: a
// revoked (or never given) launch permission cannot be turned into an
// image of one's own with the same bytes.
func TestRegisterByDigestNeedsAccess(t *testing.T) {
	storetest.Each(t, Migrations(), func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		e := newTestEnv(t, db)
		admin, alice, bob := e.client(e.admin), e.client(e.alice), e.client(e.bob)
		secret := "sha256:" + hexOf(0x5e)
		img := must[*sdk.RegisterImageOutput](t)(admin.RegisterImage(ctx, &sdk.RegisterImageInput{
			Name: aws.String("private"), ImageLocation: aws.String(secret)}))
		share := func(add bool) {
			lp := []types.LaunchPermission{{UserId: aws.String(e.alice.ID)}}
			mods := &types.LaunchPermissionModifications{Add: lp}
			if !add {
				mods = &types.LaunchPermissionModifications{Remove: lp}
			}
			must[*sdk.ModifyImageAttributeOutput](t)(admin.ModifyImageAttribute(ctx, &sdk.ModifyImageAttributeInput{
				ImageId: img.ImageId, LaunchPermission: mods}))
		}
		register := func(c *sdk.Client, name string) error {
			_, err := c.RegisterImage(ctx, &sdk.RegisterImageInput{Name: aws.String(name), ImageLocation: aws.String(secret)})
			return err
		}
		wantCode(t, register(bob, "bob-copy"), "InvalidParameterValue")
		share(true)
		must[*sdk.RunInstancesOutput](t)(alice.RunInstances(ctx, &sdk.RunInstancesInput{ImageId: img.ImageId, MinCount: aws.Int32(1), MaxCount: aws.Int32(1)}))
		share(false)
		_, err := alice.RunInstances(ctx, &sdk.RunInstancesInput{ImageId: img.ImageId, MinCount: aws.Int32(1), MaxCount: aws.Int32(1)})
		wantCode(t, err, "InvalidAMIID.NotFound")
		wantCode(t, register(alice, "alice-copy"), "InvalidParameterValue")
		var n int
		if err := db.QueryRow(ctx, `SELECT COUNT(*) FROM images WHERE digest = ?`, secret).Scan(&n); err != nil || n != 1 {
			t.Fatalf("images with the private digest: %d (%v), want only the admin's", n, err)
		}
	})
}

func hexOf(b byte) string {
	const digits = "0123456789abcdef"
	s := make([]byte, 64)
	for i := range s {
		if i%2 == 0 {
			s[i] = digits[b>>4]
		} else {
			s[i] = digits[b&15]
		}
	}
	return string(s)
}

func TestClientTokenIdempotent(t *testing.T) {
	storetest.Each(t, Migrations(), func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		e := newTestEnv(t, db)
		c := e.client(e.alice)
		first := e.run(c, 2, "token-1")
		again := e.run(c, 2, "token-1")
		if aws.ToString(first.ReservationId) != aws.ToString(again.ReservationId) ||
			len(again.Instances) != 2 || aws.ToString(again.Instances[0].InstanceId) != aws.ToString(first.Instances[0].InstanceId) {
			t.Fatalf("same token, different answers: %s vs %s", aws.ToString(first.ReservationId), aws.ToString(again.ReservationId))
		}
		_, err := c.RunInstances(ctx, &sdk.RunInstancesInput{ImageId: aws.String(e.image), MinCount: aws.Int32(3), MaxCount: aws.Int32(3),
			ClientToken: aws.String("token-1")})
		wantCode(t, err, "IdempotentParameterMismatch")
		// Tokens are per account.
		other := e.run(e.client(e.bob), 2, "token-1")
		if aws.ToString(other.ReservationId) == aws.ToString(first.ReservationId) {
			t.Fatal("bob's token returned alice's reservation")
		}
		if n := tableCounts(t, db)["instances"]; n != 4 {
			t.Fatalf("%d instances, want 4", n)
		}
	})
}

// TestRestart closes the store and reopens it under a new controller.
func TestRestart(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "ironbark.db")
	open := func() *store.DB {
		db, err := store.Open(ctx, path)
		if err != nil {
			t.Fatal(err)
		}
		if err := db.Migrate(ctx, Migrations()); err != nil {
			t.Fatal(err)
		}
		return db
	}
	db := open()
	e := newTestEnv(t, db)
	c := e.client(e.alice)
	key := must[*sdk.CreateKeyPairOutput](t)(c.CreateKeyPair(ctx, &sdk.CreateKeyPairInput{KeyName: aws.String("k")}))
	out := e.run(c, 3, "tok")
	sg := must[*sdk.CreateSecurityGroupOutput](t)(c.CreateSecurityGroup(ctx, &sdk.CreateSecurityGroupInput{GroupName: aws.String("web"), Description: aws.String("web")}))
	addr := must[*sdk.AllocateAddressOutput](t)(c.AllocateAddress(ctx, &sdk.AllocateAddressInput{}))
	first := must[*sdk.DescribeInstancesOutput](t)(c.DescribeInstances(ctx, &sdk.DescribeInstancesInput{}))
	before := tableCounts(t, db)
	e.stop()
	db.Close()

	e.db = open()
	defer e.db.Close()
	e.start()
	c = e.client(e.alice)
	if after := tableCounts(t, e.db); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("restart lost rows: %v -> %v", before, after)
	}
	second := must[*sdk.DescribeInstancesOutput](t)(c.DescribeInstances(ctx, &sdk.DescribeInstancesInput{}))
	if fmt.Sprint(instanceIDs(first.Reservations)) != fmt.Sprint(instanceIDs(second.Reservations)) {
		t.Fatal("instances differ after restart")
	}
	again := e.run(c, 3, "tok")
	if aws.ToString(again.ReservationId) != aws.ToString(out.ReservationId) {
		t.Fatal("client token forgotten across restart")
	}
	kps := must[*sdk.DescribeKeyPairsOutput](t)(c.DescribeKeyPairs(ctx, &sdk.DescribeKeyPairsInput{}))
	if len(kps.KeyPairs) != 1 || aws.ToString(kps.KeyPairs[0].KeyFingerprint) != aws.ToString(key.KeyFingerprint) {
		t.Fatalf("key pairs after restart: %+v", kps.KeyPairs)
	}
	sgs := must[*sdk.DescribeSecurityGroupsOutput](t)(c.DescribeSecurityGroups(ctx, &sdk.DescribeSecurityGroupsInput{GroupIds: []string{aws.ToString(sg.GroupId)}}))
	if len(sgs.SecurityGroups) != 1 {
		t.Fatal("security group lost")
	}
	addrs := must[*sdk.DescribeAddressesOutput](t)(c.DescribeAddresses(ctx, &sdk.DescribeAddressesInput{}))
	if len(addrs.Addresses) != 1 || aws.ToString(addrs.Addresses[0].PublicIp) != aws.ToString(addr.PublicIp) {
		t.Fatalf("addresses after restart: %+v", addrs.Addresses)
	}
}

func runIDs(out *sdk.RunInstancesOutput) []string {
	var ids []string
	for _, in := range out.Instances {
		ids = append(ids, aws.ToString(in.InstanceId))
	}
	return ids
}
