package controller

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	sdk "github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"ironbark/controller/ec2"
	"ironbark/internal/nodeapi"
	"ironbark/internal/store"
	"ironbark/internal/store/storetest"
)

func limit(n int64) *int64 { return &n }

func setQuota(t *testing.T, db *store.DB, account, kind string, n *int64) {
	t.Helper()
	if err := SetQuota(context.Background(), db, account, map[string]*int64{kind: n}); err != nil {
		t.Fatal(err)
	}
}

// succeeded counts the calls that succeeded, failing the test if any
// other failed with anything but refused.
func succeeded(t *testing.T, errs []error, refused string) int {
	t.Helper()
	n := 0
	for i, err := range errs {
		var ae *ec2.Error
		switch {
		case err == nil:
			n++
		case errors.As(err, &ae) && ae.Code == refused:
		default:
			t.Fatalf("call %d: %v", i, err)
		}
	}
	return n
}

// TestQuotaRace launches 20 instances at once, from two controllers on
// one database, for an account whose quota is 5: exactly 5 run and every
// other launch is refused with InstanceLimitExceeded. Then the same for
// key pairs, which do not take the placement lock.
func TestQuotaRace(t *testing.T) {
	storetest.Each(t, Migrations(), func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		e := newTestEnv(t, db)
		setQuota(t, db, "alice", QuotaInstances, limit(5))
		other, err := New(Config{Region: "ironbark"}, db, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		other.SetPlacer(e.placer)
		alice := ec2.Principal{AccountID: e.alice.ID, AccessKey: e.alice.AccessKey}
		params := url.Values{"ImageId": {e.image}, "MinCount": {"1"}, "MaxCount": {"1"}, "InstanceType": {"m1.small"}}
		const calls = 20
		errs := make([]error, calls)
		var wg sync.WaitGroup
		for i := range calls {
			cloud := e.cloud
			if i%2 == 1 {
				cloud = other
			}
			wg.Go(func() {
				_, errs[i] = cloud.ServeEC2(ctx, &ec2.Request{Action: "RunInstances", Version: "2016-11-15", Params: params, Principal: alice})
			})
		}
		wg.Wait()
		if ran := succeeded(t, errs, "InstanceLimitExceeded"); ran != 5 {
			t.Fatalf("%d launches ran at a quota of 5", ran)
		}
		var live int
		if err := db.QueryRow(ctx, `SELECT COUNT(*) FROM instances WHERE account_id = ? AND state <> 'terminated'`, e.alice.ID).Scan(&live); err != nil {
			t.Fatal(err)
		}
		if live != 5 {
			t.Fatalf("%d instances stored at a quota of 5", live)
		}
		// Resources outside placement count under the account's quota
		// row: 10 key pairs at once at a quota of 3.
		setQuota(t, db, "alice", QuotaKeyPairs, limit(3))
		kerrs := make([]error, 10)
		for i := range kerrs {
			cloud := e.cloud
			if i%2 == 1 {
				cloud = other
			}
			wg.Go(func() {
				_, kerrs[i] = cloud.ServeEC2(ctx, &ec2.Request{Action: "CreateKeyPair", Version: "2016-11-15", Principal: alice,
					Params: url.Values{"KeyName": {fmt.Sprintf("k%d", i)}, "KeyType": {"ed25519"}}})
			})
		}
		wg.Wait()
		if made := succeeded(t, kerrs, "ResourceLimitExceeded"); made != 3 {
			t.Fatalf("%d key pairs made at a quota of 3", made)
		}
		attrs := must[*sdk.DescribeAccountAttributesOutput](t)(e.client(e.alice).DescribeAccountAttributes(ctx, &sdk.DescribeAccountAttributesInput{
			AttributeNames: []types.AccountAttributeName{"max-instances"}}))
		if got := aws.ToString(attrs.AccountAttributes[0].AttributeValues[0].AttributeValue); got != "5" {
			t.Fatalf("max-instances %s, want the quota 5", got)
		}
	})
}

// TestQuotaEachKind fills each kind of quota and finds the next creation
// refused with EC2's code, while an account without quotas is not held
// back and a freed resource makes room again.
func TestQuotaEachKind(t *testing.T) {
	storetest.Each(t, Migrations(), func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		e := newTestEnv(t, db)
		c := e.client(e.alice)
		run := func(vt string, lo, hi int32, public bool) (*sdk.RunInstancesOutput, error) {
			in := &sdk.RunInstancesInput{ImageId: aws.String(e.image), MinCount: aws.Int32(lo), MaxCount: aws.Int32(hi),
				InstanceType: types.InstanceType(vt)}
			if public {
				in.NetworkInterfaces = []types.InstanceNetworkInterfaceSpecification{{DeviceIndex: aws.Int32(0), AssociatePublicIpAddress: aws.Bool(true)}}
			}
			return c.RunInstances(ctx, in)
		}
		ids := func(out *sdk.RunInstancesOutput) []string {
			var s []string
			for _, in := range out.Instances {
				s = append(s, aws.ToString(in.InstanceId))
			}
			return s
		}
		terminate := func(s []string) {
			t.Helper()
			must[*sdk.TerminateInstancesOutput](t)(c.TerminateInstances(ctx, &sdk.TerminateInstancesInput{InstanceIds: s}))
			e.observe(t, s, nodeapi.StateTerminated)
		}

		t.Run("no quota is unlimited", func(t *testing.T) {
			out := must[*sdk.RunInstancesOutput](t)(e.client(e.bob).RunInstances(ctx, &sdk.RunInstancesInput{ImageId: aws.String(e.image),
				MinCount: aws.Int32(8), MaxCount: aws.Int32(8), InstanceType: "m1.small"}))
			must[*sdk.TerminateInstancesOutput](t)(e.client(e.bob).TerminateInstances(ctx, &sdk.TerminateInstancesInput{InstanceIds: ids(out)}))
			e.observe(t, ids(out), nodeapi.StateTerminated)
		})

		t.Run("instances", func(t *testing.T) {
			setQuota(t, db, "alice", QuotaInstances, limit(3))
			// MaxCount beyond the quota launches what fits; MinCount beyond it is refused.
			out := must[*sdk.RunInstancesOutput](t)(run("m1.small", 1, 5, false))
			if len(out.Instances) != 3 {
				t.Fatalf("%d instances launched at a quota of 3", len(out.Instances))
			}
			_, err := run("m1.small", 1, 1, false)
			wantCode(t, err, "InstanceLimitExceeded")
			terminate(ids(out)[:1])
			one := must[*sdk.RunInstancesOutput](t)(run("m1.small", 1, 1, false))
			terminate(append(ids(out)[1:], ids(one)...))
			setQuota(t, db, "alice", QuotaInstances, nil)
		})

		t.Run("cores", func(t *testing.T) {
			setQuota(t, db, "alice", QuotaCores, limit(4))
			out := must[*sdk.RunInstancesOutput](t)(run("c1.medium", 1, 3, false)) // 2 cores each
			if len(out.Instances) != 2 {
				t.Fatalf("%d c1.medium launched in 4 cores", len(out.Instances))
			}
			_, err := run("m1.small", 1, 1, false)
			wantCode(t, err, "VcpuLimitExceeded")
			terminate(ids(out))
			setQuota(t, db, "alice", QuotaCores, nil)
		})

		t.Run("memory", func(t *testing.T) {
			setQuota(t, db, "alice", QuotaMemory, limit(512))
			out := must[*sdk.RunInstancesOutput](t)(run("m1.small", 2, 2, false)) // 256 MiB each
			_, err := run("m1.small", 1, 1, false)
			wantCode(t, err, "ResourceLimitExceeded")
			terminate(ids(out))
			setQuota(t, db, "alice", QuotaMemory, nil)
		})

		t.Run("addresses", func(t *testing.T) {
			setQuota(t, db, "alice", QuotaAddresses, limit(2))
			must[*sdk.AllocateAddressOutput](t)(c.AllocateAddress(ctx, &sdk.AllocateAddressInput{}))
			out := must[*sdk.RunInstancesOutput](t)(run("m1.small", 1, 1, true))
			if aws.ToString(out.Instances[0].PublicIpAddress) == "" {
				t.Fatal("launch with a public address got none")
			}
			_, err := c.AllocateAddress(ctx, &sdk.AllocateAddressInput{})
			wantCode(t, err, "AddressLimitExceeded")
			_, err = run("m1.small", 1, 1, true)
			wantCode(t, err, "AddressLimitExceeded")
			// Without a public address the launch is not an address's business.
			plain := must[*sdk.RunInstancesOutput](t)(run("m1.small", 1, 1, false))
			terminate(append(ids(out), ids(plain)...))
			must[*sdk.AllocateAddressOutput](t)(c.AllocateAddress(ctx, &sdk.AllocateAddressInput{}))
			setQuota(t, db, "alice", QuotaAddresses, nil)
		})

		t.Run("images", func(t *testing.T) {
			setQuota(t, db, "alice", QuotaImages, limit(1))
			e.registerPrivateImage(t, e.alice)
			_, err := c.RegisterImage(ctx, &sdk.RegisterImageInput{Name: aws.String("second"), ImageLocation: aws.String("sha256:" + hexOf(0x0f))})
			wantCode(t, err, "ResourceLimitExceeded")
		})

		t.Run("key pairs", func(t *testing.T) {
			setQuota(t, db, "alice", QuotaKeyPairs, limit(1))
			must[*sdk.CreateKeyPairOutput](t)(c.CreateKeyPair(ctx, &sdk.CreateKeyPairInput{KeyName: aws.String("one"), KeyType: types.KeyTypeEd25519}))
			_, err := c.CreateKeyPair(ctx, &sdk.CreateKeyPairInput{KeyName: aws.String("two"), KeyType: types.KeyTypeEd25519})
			wantCode(t, err, "ResourceLimitExceeded")
			must[*sdk.DeleteKeyPairOutput](t)(c.DeleteKeyPair(ctx, &sdk.DeleteKeyPairInput{KeyName: aws.String("one")}))
			must[*sdk.CreateKeyPairOutput](t)(c.CreateKeyPair(ctx, &sdk.CreateKeyPairInput{KeyName: aws.String("two"), KeyType: types.KeyTypeEd25519}))
		})

		t.Run("security groups", func(t *testing.T) {
			setQuota(t, db, "alice", QuotaSecurityGroups, limit(1))
			must[*sdk.CreateSecurityGroupOutput](t)(c.CreateSecurityGroup(ctx, &sdk.CreateSecurityGroupInput{GroupName: aws.String("web"), Description: aws.String("web")}))
			_, err := c.CreateSecurityGroup(ctx, &sdk.CreateSecurityGroupInput{GroupName: aws.String("db"), Description: aws.String("db")})
			wantCode(t, err, "SecurityGroupLimitExceeded")
			// The default group is made as needed and is not counted.
			out := must[*sdk.RunInstancesOutput](t)(run("m1.small", 1, 1, false))
			terminate(ids(out))
		})

		qs, err := ListQuotas(ctx, db, "alice")
		if err != nil {
			t.Fatal(err)
		}
		q := qs[0]
		want := map[string]int64{QuotaImages: 1, QuotaKeyPairs: 1, QuotaSecurityGroups: 1}
		if fmt.Sprint(q.Limits) != fmt.Sprint(want) {
			t.Fatalf("limits %v, want %v", q.Limits, want)
		}
		if q.Used[QuotaAddresses] != 2 || q.Used[QuotaInstances] != 0 || q.Used[QuotaSecurityGroups] != 1 {
			t.Fatalf("usage %v", q.Used)
		}
	})
}

func TestSetQuotaRefusesBadInput(t *testing.T) {
	db := storetest.SQLite(t, Migrations())
	ctx := context.Background()
	if _, err := CreateAccount(ctx, db, "alice", false); err != nil {
		t.Fatal(err)
	}
	if err := SetQuota(ctx, db, "alice", map[string]*int64{"gpus": limit(1)}); !errors.Is(err, ErrUnknownQuota) {
		t.Fatalf("unknown kind: %v", err)
	}
	if err := SetQuota(ctx, db, "alice", map[string]*int64{QuotaCores: limit(-1)}); err == nil {
		t.Fatal("negative limit accepted")
	}
	if err := SetQuota(ctx, db, "nobody", map[string]*int64{QuotaCores: limit(1)}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown account: %v", err)
	}
	qs, err := ListQuotas(ctx, db, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(qs) != 1 || qs[0].Account != "alice" || len(qs[0].Limits) != 0 {
		t.Fatalf("refused input left quotas %+v", qs)
	}
	if _, err := ListQuotas(ctx, db, "nobody"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("list for an unknown account: %v", err)
	}
}

// BenchmarkRunInstancesQuota launches one instance at a time for an
// account that holds 10,000, without quotas and with instance, core and
// memory quotas (each launch then counts what the account holds): the
// issue's goal is at least 0.9x the throughput without.
func BenchmarkRunInstancesQuota(b *testing.B) {
	for _, on := range []bool{false, true} {
		name := "off"
		if on {
			name = "on"
		}
		b.Run(name, func(b *testing.B) {
			cloud, e := benchCloud(b)
			p := e.seedAccount(b, cloud, "busy", 10000)
			if on {
				big := limit(1 << 40)
				if err := SetQuota(context.Background(), e.db, "busy", map[string]*int64{QuotaInstances: big, QuotaCores: big, QuotaMemory: big}); err != nil {
					b.Fatal(err)
				}
			}
			params := map[string][]string{"ImageId": {e.image}, "MinCount": {"1"}, "MaxCount": {"1"}}
			for b.Loop() {
				if _, err := cloud.ServeEC2(context.Background(), &ec2.Request{Action: "RunInstances", Principal: p, Params: params}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
