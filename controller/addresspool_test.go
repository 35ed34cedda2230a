package controller

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"

	"ironbark/controller/ec2"
	"ironbark/internal/store"
	"ironbark/internal/store/storetest"
)

// TestAddressPool: a fresh cloud says how to get public addresses; blocks
// added to the store serve a running controller at once, and a block is
// not removed while an account holds one of its addresses.
func TestAddressPool(t *testing.T) {
	storetest.Each(t, Migrations(), func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		e := newTestEnv(t, db)
		cloud, err := New(Config{}, db, nil, nil) // no publicAddresses
		if err != nil {
			t.Fatal(err)
		}
		alice := ec2.Principal{AccountID: e.alice.ID, AccessKey: e.alice.AccessKey}
		call := func(action string, kv ...string) (any, error) {
			v := url.Values{}
			for i := 0; i+1 < len(kv); i += 2 {
				v.Set(kv[i], kv[i+1])
			}
			return cloud.ServeEC2(ctx, &ec2.Request{Action: action, Version: "2016-11-15", Params: v, Principal: alice})
		}
		_, err = call("AllocateAddress")
		if ae := ec2.AsError(err); ae.Code != "AddressLimitExceeded" || !strings.Contains(ae.Message, "ironbark address pool add CIDR") {
			t.Fatalf("allocate from no pool: %v", err)
		}
		if err := AddAddressBlock(ctx, db, "203.0.113.8/30"); err != nil {
			t.Fatal(err)
		}
		if err := AddAddressBlock(ctx, db, "203.0.113.8/30"); !errors.Is(err, ErrAddressBlockExists) {
			t.Fatalf("adding a block twice: %v", err)
		}
		if err := AddAddressBlock(ctx, db, "203.0.113.300/30"); err == nil {
			t.Fatal("a malformed block was added")
		}
		var ips []string
		for range 2 {
			resp, err := call("AllocateAddress")
			if err != nil {
				t.Fatal(err)
			}
			ips = append(ips, resp.(*AllocateAddressResponse).PublicIP)
		}
		if strings.Join(ips, " ") != "203.0.113.9 203.0.113.10" {
			t.Fatalf("allocated %v", ips)
		}
		if _, err := call("AllocateAddress"); err == nil || !strings.Contains(err.Error(), "All 2 public addresses") {
			t.Fatalf("allocate from a full pool: %v", err)
		}
		blocks, err := ListAddressBlocks(ctx, db, []string{"192.0.2.1-192.0.2.3"})
		if err != nil || len(blocks) != 2 || blocks[0] != (AddressBlock{"192.0.2.1-192.0.2.3", 3, 0}) ||
			blocks[1] != (AddressBlock{"203.0.113.8/30", 2, 2}) {
			t.Fatalf("list: %+v %v", blocks, err)
		}
		if err := RemoveAddressBlock(ctx, db, "203.0.113.8/30"); err == nil || !strings.Contains(err.Error(), "203.0.113.9, 203.0.113.10") {
			t.Fatalf("removing a block in use: %v", err)
		}
		for _, ip := range ips {
			if _, err := call("ReleaseAddress", "PublicIp", ip); err != nil {
				t.Fatal(err)
			}
		}
		if err := RemoveAddressBlock(ctx, db, "203.0.113.8/30"); err != nil {
			t.Fatal(err)
		}
		if err := RemoveAddressBlock(ctx, db, "203.0.113.8/30"); !errors.Is(err, ErrNoAddressBlock) {
			t.Fatalf("removing a block twice: %v", err)
		}
	})
}
