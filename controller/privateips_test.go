package controller

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	sdk "github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"ironbark/internal/nodeapi"
	"ironbark/internal/store"
	"ironbark/internal/store/storetest"
)

func TestPrivateAddresses(t *testing.T) {
	storetest.Each(t, Migrations(), func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		e := newTestEnv(t, db)
		c := e.client(e.alice)

		out := e.run(c, 3, "")
		got := map[string]string{} // instance id -> private address
		for _, in := range out.Instances {
			got[aws.ToString(in.InstanceId)] = aws.ToString(in.PrivateIpAddress)
		}
		want := []string{"10.88.0.10", "10.88.0.11", "10.88.0.12"}
		for i, in := range out.Instances {
			if ip := aws.ToString(in.PrivateIpAddress); ip != want[i] {
				t.Fatalf("instance %d: private address %q, want %q", i, ip, want[i])
			}
			if dns := aws.ToString(in.PrivateDnsName); dns != PrivateDNSName(want[i]) {
				t.Fatalf("instance %d: private DNS name %q", i, dns)
			}
		}

		// DescribeInstances shows them, and filters by them.
		desc := must[*sdk.DescribeInstancesOutput](t)(c.DescribeInstances(ctx, &sdk.DescribeInstancesInput{}))
		for _, r := range desc.Reservations {
			for _, in := range r.Instances {
				if id := aws.ToString(in.InstanceId); aws.ToString(in.PrivateIpAddress) != got[id] {
					t.Fatalf("describe %s: %q, run said %q", id, aws.ToString(in.PrivateIpAddress), got[id])
				}
			}
		}
		first := aws.ToString(out.Instances[0].InstanceId)
		byIP := must[*sdk.DescribeInstancesOutput](t)(c.DescribeInstances(ctx, &sdk.DescribeInstancesInput{
			Filters: []types.Filter{{Name: aws.String("private-ip-address"), Values: []string{"10.88.0.10"}}}}))
		if ids := instanceIDs(byIP.Reservations); len(ids) != 1 || ids[0] != first {
			t.Fatalf("private-ip-address filter: %v, want [%s]", ids, first)
		}

		// The node is told each instance's address.
		seen := 0
		for _, node := range []string{"node-a1", "node-a2", "node-b1"} {
			specs := must[[]nodeapi.InstanceSpec](t)(e.cloud.DesiredOnNode(ctx, node))
			for _, s := range specs {
				if s.PrivateIP != got[s.InstanceID] {
					t.Fatalf("spec %s: private address %q, want %q", s.InstanceID, s.PrivateIP, got[s.InstanceID])
				}
				seen++
			}
		}
		if seen != 3 {
			t.Fatalf("nodes were told of %d instances, want 3", seen)
		}

		// A terminated instance gives its address back: the next launch
		// takes the lowest free one again.
		must[*sdk.TerminateInstancesOutput](t)(c.TerminateInstances(ctx, &sdk.TerminateInstancesInput{InstanceIds: []string{first}}))
		again := e.run(c, 1, "")
		if ip := aws.ToString(again.Instances[0].PrivateIpAddress); ip != "10.88.0.13" {
			t.Fatalf("while shutting down, the address is still held: got %q, want 10.88.0.13", ip)
		}
		e.observe(t, []string{first}, nodeapi.StateTerminated)
		gone := must[*sdk.DescribeInstancesOutput](t)(c.DescribeInstances(ctx, &sdk.DescribeInstancesInput{InstanceIds: []string{first}}))
		if in := gone.Reservations[0].Instances[0]; in.PrivateIpAddress != nil && aws.ToString(in.PrivateIpAddress) != "" {
			t.Fatalf("terminated instance still shows %q", aws.ToString(in.PrivateIpAddress))
		}
		reused := e.run(c, 1, "")
		if ip := aws.ToString(reused.Instances[0].PrivateIpAddress); ip != "10.88.0.10" {
			t.Fatalf("released address not reused: got %q", ip)
		}

		// A small subnet runs out: .10 to .14 of a /28.
		sub, pool, err := parseInstanceSubnet("10.88.0.0/28")
		if err != nil {
			t.Fatal(err)
		}
		e.cloud.subnet, e.cloud.privatePool = sub, pool
		_, err = c.RunInstances(ctx, &sdk.RunInstancesInput{ImageId: aws.String(e.image), MinCount: aws.Int32(2),
			MaxCount: aws.Int32(2), InstanceType: "m1.small"})
		wantCode(t, err, "InsufficientFreeAddressesInSubnet")
		last := e.run(c, 1, "")
		if ip := aws.ToString(last.Instances[0].PrivateIpAddress); ip != "10.88.0.14" {
			t.Fatalf("last address: got %q, want 10.88.0.14", ip)
		}
	})
}

func TestParseInstanceSubnet(t *testing.T) {
	for _, bad := range []string{"", "10.88.0.0", "10.88.0.0/29", "fd00::/64", "nonsense/24"} {
		if _, _, err := parseInstanceSubnet(bad); err == nil {
			t.Errorf("%q: accepted", bad)
		}
	}
	pfx, pool, err := parseInstanceSubnet("10.88.0.7/24")
	if err != nil {
		t.Fatal(err)
	}
	if pfx.String() != "10.88.0.0/24" || pool.ranges[0][0].String() != "10.88.0.10" || pool.ranges[0][1].String() != "10.88.0.254" {
		t.Fatalf("%v: %v", pfx, pool.ranges)
	}
	if _, err := New(Config{InstanceSubnet: "10.88.0.0/30"}, nil, nil, nil); err == nil {
		t.Fatal("New accepted a /30 instance subnet")
	}
}

func TestInstanceSubnetSetting(t *testing.T) {
	dir := t.TempDir()
	if err := SaveSettings(dir, Settings{InstanceSubnet: "10.77.0.0/16"}); err != nil {
		t.Fatal(err)
	}
	if s, err := LoadSettings(dir); err != nil || s.InstanceSubnet != "10.77.0.0/16" {
		t.Fatalf("round trip: %+v %v", s, err)
	}
	if err := SaveSettings(dir, Settings{InstanceSubnet: "10.77.0.0/30"}); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadSettings(dir); err == nil {
		t.Fatal("a /30 instance subnet was accepted")
	}
}

// Two controllers on one store each keep a copy of the taken private
// addresses (takenIPs): an address the other one took since is never
// handed out twice, one this controller freed is reused at once, and one
// the other controller freed is reused once the copy is reread.
func TestPrivateAddressesTwoControllers(t *testing.T) {
	storetest.Each(t, Migrations(), func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		a, b := newTestEnv(t, db), newTestEnv(t, db)
		ca, cb := a.client(a.alice), b.client(b.alice)
		ip := func(out *sdk.RunInstancesOutput) string { return aws.ToString(out.Instances[0].PrivateIpAddress) }
		// exact: the controller trusts its copy without checking the
		// addresses it picks (the launch sequence is the copy's).
		exact := func(c *Cloud) bool {
			var seq int64
			if err := db.QueryRow(ctx, `SELECT seq FROM launch_seq`).Scan(&seq); err != nil {
				t.Fatal(err)
			}
			c.takenIPs.mu.Lock()
			defer c.takenIPs.mu.Unlock()
			return c.takenIPs.set != nil && c.takenIPs.seqKnown && c.takenIPs.seq == seq
		}
		first := a.run(ca, 1, "")
		if got := ip(first); got != "10.88.0.10" {
			t.Fatalf("first launch on a: %s", got)
		}
		if !exact(a.cloud) {
			t.Fatal("a's copy is not exact after a launch of its own")
		}
		if got := ip(b.run(cb, 1, "")); got != "10.88.0.11" {
			t.Fatalf("launch on b: %s, want 10.88.0.11", got)
		}
		if exact(a.cloud) {
			t.Fatal("a's copy counts as exact after b launched")
		}
		// a's copy does not have .11: the launch finds it held and
		// rereads.
		three := a.run(ca, 3, "")
		var got []string
		for _, in := range three.Instances {
			got = append(got, aws.ToString(in.PrivateIpAddress))
		}
		if !slices.Equal(got, []string{"10.88.0.12", "10.88.0.13", "10.88.0.14"}) {
			t.Fatalf("launch of 3 on a after b's: %v", got)
		}
		if !exact(a.cloud) || exact(b.cloud) {
			t.Fatalf("after a reread: a's copy exact %v (want true), b's %v (want false)", exact(a.cloud), exact(b.cloud))
		}

		// Freed on b: b reuses it at once; a once its copy is reread.
		id := aws.ToString(first.Instances[0].InstanceId)
		must[*sdk.TerminateInstancesOutput](t)(cb.TerminateInstances(ctx, &sdk.TerminateInstancesInput{InstanceIds: []string{id}}))
		b.observe(t, []string{id}, nodeapi.StateTerminated)
		if got := ip(b.run(cb, 1, "")); got != "10.88.0.10" {
			t.Fatalf("b after freeing .10: %s", got)
		}
		id = aws.ToString(three.Instances[1].InstanceId) // .13
		must[*sdk.TerminateInstancesOutput](t)(cb.TerminateInstances(ctx, &sdk.TerminateInstancesInput{InstanceIds: []string{id}}))
		b.observe(t, []string{id}, nodeapi.StateTerminated)
		if got := ip(a.run(ca, 1, "")); got != "10.88.0.15" {
			t.Fatalf("a before rereading: %s, want 10.88.0.15 (its copy still has .13)", got)
		}
		a.cloud.takenIPs.mu.Lock()
		a.cloud.takenIPs.read = time.Time{} // as if takenIPsTTL had passed
		a.cloud.takenIPs.mu.Unlock()
		if got := ip(a.run(ca, 1, "")); got != "10.88.0.13" {
			t.Fatalf("a after rereading: %s, want 10.88.0.13", got)
		}

		// Every live address is held by one instance.
		ips, err := store.Column[string](db.Query(ctx, `SELECT private_ip FROM instances WHERE state <> 'terminated'`))
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for _, p := range ips {
			if seen[p] {
				t.Fatalf("%s held twice: %v", p, ips)
			}
			seen[p] = true
		}
	})
}
