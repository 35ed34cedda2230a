package controller

import (
	"context"
	"net/url"
	"sync"
	"testing"

	"ironbark/controller/ec2"
	"ironbark/internal/store"
	"ironbark/internal/store/storetest"
)

// TestClientTokenRetriesRace sends one RunInstances and many retries of
// it at once, through two controllers on one store, for exactly the
// capacity there is: every call must get the original reservation, none
// InsufficientInstanceCapacity.
func TestClientTokenRetriesRace(t *testing.T) {
	storetest.Each(t, Migrations(), func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		e := newTestEnv(t, db)
		other, err := New(Config{Region: "ironbark"}, db, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		other.SetPlacer(e.placer)
		alice := ec2.Principal{AccountID: e.alice.ID, AccessKey: e.alice.AccessKey}
		// zone-b holds two m1.small; the call asks for both.
		params := url.Values{"ImageId": {e.image}, "MinCount": {"2"}, "MaxCount": {"2"}, "InstanceType": {"m1.small"},
			"Placement.AvailabilityZone": {"zone-b"}, "ClientToken": {"retry-me"}}
		const calls = 40
		res := make([]string, calls)
		errs := make([]error, calls)
		var wg sync.WaitGroup
		for i := range calls {
			cloud := e.cloud
			if i%2 == 1 {
				cloud = other
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				resp, err := cloud.ServeEC2(ctx, &ec2.Request{Action: "RunInstances", Version: "2016-11-15", Params: params, Principal: alice})
				if err != nil {
					errs[i] = err
					return
				}
				res[i] = resp.(*RunInstancesResponse).ReservationID
			}()
		}
		wg.Wait()
		for i := range calls {
			if errs[i] != nil {
				t.Fatalf("call %d: %v", i, errs[i])
			}
			if res[i] != res[0] {
				t.Fatalf("call %d got reservation %s, call 0 %s", i, res[i], res[0])
			}
		}
		if n := tableCounts(t, db)["instances"]; n != 2 {
			t.Fatalf("%d instances for one request", n)
		}
	})
}
