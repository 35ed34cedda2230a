package controller

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	sdk "github.com/aws/aws-sdk-go-v2/service/ec2"

	"ironbark/controller/ec2"
	"ironbark/internal/store"
	"ironbark/internal/store/storetest"
)

// A deactivated key, and every key of a disabled account, is refused by
// every action the controller serves (the table it registers, so an
// action added later is covered), from the next call on, and changes
// nothing; activating and enabling again let them back in.
func TestRefusedKeysEveryAction(t *testing.T) {
	storetest.Each(t, Migrations(), func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		e := newTestEnv(t, db)
		const ec2Call = "Version=2016-11-15&Action="
		const stsCall = "Version=2011-06-15&Action="
		// Both keys have just signed calls: nothing remembered of that
		// may keep them alive.
		e.mustPost(e.alice, ec2Call+"DescribeRegions")
		e.mustPost(e.bob, ec2Call+"DescribeRegions")
		if err := SetAccessKeyActive(ctx, db, "alice", e.alice.AccessKey, false); err != nil {
			t.Fatal(err)
		}
		if err := SetAccountDisabled(ctx, db, "bob", true); err != nil {
			t.Fatal(err)
		}
		before := tableCounts(t, db)
		refused := map[string]Account{"deactivated key": e.alice, "disabled account": e.bob}
		for _, action := range slices.Sorted(maps.Keys(e.cloud.actions)) {
			for why, a := range refused {
				status, out := e.post(a, ec2Call+action)
				if status != 401 || !strings.Contains(out, "<Code>AuthFailure</Code>") {
					t.Errorf("%s with a %s: %d %s", action, why, status, out)
				}
			}
		}
		for _, action := range slices.Sorted(maps.Keys(e.cloud.stsActions)) {
			for why, a := range refused {
				status, out := e.postTo("/", "sts", a, stsCall+action)
				if status != 403 || !strings.Contains(out, "<Code>InvalidClientTokenId</Code>") {
					t.Errorf("STS %s with a %s: %d %s", action, why, status, out)
				}
			}
		}
		for _, action := range slices.Sorted(maps.Keys(e.cloud.iamActions)) {
			for why, a := range refused {
				status, out := e.postTo("/", "iam", a, "Version=2010-05-08&Action="+action)
				if status != 403 || !strings.Contains(out, "<Code>InvalidClientTokenId</Code>") || !strings.Contains(out, ec2.IAMNamespace) {
					t.Errorf("IAM %s with a %s: %d %s", action, why, status, out)
				}
			}
		}
		if after := tableCounts(t, db); !maps.Equal(before, after) {
			t.Fatalf("refused calls changed the store: %v -> %v", before, after)
		}
		// The SDK sees EC2's code too.
		_, err := e.client(e.alice).DescribeInstances(ctx, &sdk.DescribeInstancesInput{})
		wantCode(t, err, "AuthFailure")

		if err := SetAccessKeyActive(ctx, db, "alice", e.alice.AccessKey, true); err != nil {
			t.Fatal(err)
		}
		if err := SetAccountDisabled(ctx, db, "bob", false); err != nil {
			t.Fatal(err)
		}
		e.mustPost(e.alice, ec2Call+"DescribeRegions")
		e.mustPost(e.bob, ec2Call+"DescribeRegions")
	})
}

// Rotation: a second key works beside the first; a third is refused;
// with the first deactivated and deleted the account carries on with the
// second.
func TestAccessKeyRotation(t *testing.T) {
	storetest.Each(t, Migrations(), func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		e := newTestEnv(t, db)
		old := e.alice
		ids := runIDs(e.run(e.client(old), 1, ""))

		fresh, err := CreateAccessKey(ctx, db, "alice", "")
		if err != nil {
			t.Fatal(err)
		}
		if fresh.ID != old.ID || fresh.AccessKey == old.AccessKey || fresh.SecretKey == "" {
			t.Fatalf("new key %+v for %+v", fresh, old)
		}
		if _, err := CreateAccessKey(ctx, db, "alice", ""); !errors.Is(err, ErrTooManyKeys) {
			t.Fatalf("third key: %v", err)
		}
		for _, a := range []Account{old, fresh} {
			out := must[*sdk.DescribeInstancesOutput](t)(e.client(a).DescribeInstances(ctx, &sdk.DescribeInstancesInput{}))
			if got := instanceIDs(out.Reservations); !slices.Equal(got, ids) {
				t.Fatalf("key %s sees %v, want %v", a.AccessKey, got, ids)
			}
		}
		// The new key's secret is sealed at rest like every other.
		var stored string
		if err := db.QueryRow(ctx, `SELECT secret FROM access_keys WHERE access_key = ?`, fresh.AccessKey).Scan(&stored); err != nil {
			t.Fatal(err)
		}
		if !store.IsSealed(stored) || strings.Contains(stored, fresh.SecretKey) {
			t.Fatalf("new key's secret stored as %q", stored)
		}

		if err := SetAccessKeyActive(ctx, db, "alice", old.AccessKey, false); err != nil {
			t.Fatal(err)
		}
		_, err = e.client(old).DescribeInstances(ctx, &sdk.DescribeInstancesInput{})
		wantCode(t, err, "AuthFailure")
		must[*sdk.TerminateInstancesOutput](t)(e.client(fresh).TerminateInstances(ctx, &sdk.TerminateInstancesInput{InstanceIds: ids}))

		if err := DeleteAccessKey(ctx, db, "", "alice", old.AccessKey); err != nil {
			t.Fatal(err)
		}
		if err := DeleteAccessKey(ctx, db, "", "alice", old.AccessKey); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("deleting a deleted key: %v", err)
		}
		// bob cannot touch alice's key by naming it under his account.
		if err := SetAccessKeyActive(ctx, db, "bob", fresh.AccessKey, false); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("bob deactivating alice's key: %v", err)
		}
		keys, err := AccessKeys(ctx, db, "alice")
		if err != nil {
			t.Fatal(err)
		}
		if len(keys) != 1 || keys[0].AccessKey != fresh.AccessKey || !keys[0].Active {
			t.Fatalf("keys after rotation: %+v", keys)
		}
		if a, err := LookupAccount(ctx, db, "alice"); err != nil || a.AccessKey != fresh.AccessKey || a.SecretKey != fresh.SecretKey {
			t.Fatalf("alice after rotation: %+v, %v", a, err)
		}
	})
}

// A disabled account's instances keep running and stay wanted running;
// the account finds them as it left them when enabled again.
func TestDisabledAccountInstancesKeepRunning(t *testing.T) {
	storetest.Each(t, Migrations(), func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		e := newTestEnv(t, db)
		ids := runIDs(e.run(e.client(e.alice), 2, ""))
		e.observe(t, ids, "running")

		if err := SetAccountDisabled(ctx, db, "alice", true); err != nil {
			t.Fatal(err)
		}
		if d, err := AccountDisabled(ctx, db, "alice"); err != nil || !d {
			t.Fatalf("disabled: %v, %v", d, err)
		}
		_, err := e.client(e.alice).DescribeInstances(ctx, &sdk.DescribeInstancesInput{})
		wantCode(t, err, "AuthFailure")
		// The node keeps its orders and reports them running.
		e.observe(t, ids, "running")
		for _, id := range ids {
			var desired string
			if err := db.QueryRow(ctx, `SELECT desired FROM instances WHERE id = ?`, id).Scan(&desired); err != nil {
				t.Fatal(err)
			}
			if s := e.state(t, id); s != "running" || desired != "running" {
				t.Fatalf("%s of a disabled account: state %s, desired %s", id, s, desired)
			}
		}
		out := must[*sdk.DescribeInstancesOutput](t)(e.client(e.admin).DescribeInstances(ctx, &sdk.DescribeInstancesInput{InstanceIds: ids}))
		if got := instanceIDs(out.Reservations); len(got) != 2 {
			t.Fatalf("admin sees %v", got)
		}

		if err := SetAccountDisabled(ctx, db, AdminAccount, true); !errors.Is(err, ErrAdminDisable) {
			t.Fatalf("disabling the admin: %v", err)
		}
		if err := SetAccountDisabled(ctx, db, "nobody", true); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("disabling an unknown account: %v", err)
		}
		if err := SetAccountDisabled(ctx, db, "alice", false); err != nil {
			t.Fatal(err)
		}
		out = must[*sdk.DescribeInstancesOutput](t)(e.client(e.alice).DescribeInstances(ctx, &sdk.DescribeInstancesInput{}))
		if got := instanceIDs(out.Reservations); !slices.Equal(slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(ids))) {
			t.Fatalf("alice enabled sees %v, want %v", got, ids)
		}
	})
}

// A key's last use is listed, written at most once per KeyUseInterval.
func TestAccessKeyLastUsed(t *testing.T) {
	storetest.Each(t, Migrations(), func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		e := newTestEnv(t, db)
		lastUsed := func() time.Time {
			t.Helper()
			keys, err := AccessKeys(ctx, db, "alice")
			if err != nil || len(keys) != 1 {
				t.Fatalf("keys %+v, %v", keys, err)
			}
			return keys[0].LastUsed
		}
		if u := lastUsed(); !u.IsZero() {
			t.Fatalf("an unused key was last used %v", u)
		}
		t0 := time.Now().UTC().Truncate(time.Second)
		at := t0
		e.cloud.now = func() time.Time { return at }
		call := "Version=2016-11-15&Action=DescribeRegions"
		e.mustPost(e.alice, call)
		if u := lastUsed(); !u.Equal(t0) {
			t.Fatalf("last used %v, want %v", u, t0)
		}
		at = t0.Add(KeyUseInterval / 2)
		e.mustPost(e.alice, call)
		if u := lastUsed(); !u.Equal(t0) {
			t.Fatalf("a second call within %v wrote last used %v", KeyUseInterval, u)
		}
		at = t0.Add(KeyUseInterval + time.Second)
		e.mustPost(e.alice, call)
		if u := lastUsed(); !u.Equal(at) {
			t.Fatalf("last used %v, want %v", u, at)
		}
		// A refused call is no use.
		if status, _ := e.post(Account{AccessKey: e.alice.AccessKey, SecretKey: "wrong"}, call); status != 403 {
			t.Fatalf("wrong secret: %d", status)
		}
		at = at.Add(2 * KeyUseInterval)
		e.post(Account{AccessKey: e.alice.AccessKey, SecretKey: "wrong"}, call)
		if u := lastUsed(); !u.Equal(t0.Add(KeyUseInterval + time.Second)) {
			t.Fatalf("a refused call moved last used to %v", u)
		}
	})
}

// Creates at once still leave at most MaxAccessKeys keys.
func TestCreateAccessKeyRace(t *testing.T) {
	storetest.Each(t, Migrations(), func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		if _, err := CreateAccount(ctx, db, "carol", false); err != nil {
			t.Fatal(err)
		}
		const n = 6
		errs := make(chan error, n)
		for range n {
			go func() {
				_, err := CreateAccessKey(ctx, db, "carol", "")
				errs <- err
			}()
		}
		made := 0
		for range n {
			err := <-errs
			switch {
			case err == nil:
				made++
			case !errors.Is(err, ErrTooManyKeys):
				t.Errorf("create: %v", err)
			}
		}
		keys, err := AccessKeys(ctx, db, "carol")
		if err != nil {
			t.Fatal(err)
		}
		if made != MaxAccessKeys-1 || len(keys) != MaxAccessKeys {
			t.Fatalf("%d creates succeeded, %d keys held", made, len(keys))
		}
	})
}
