package controller

import (
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	sdk "github.com/aws/aws-sdk-go-v2/service/ec2"

	"ironbark/controller/ec2"
	"ironbark/controller/usage"
	"ironbark/internal/nodeapi"
	"ironbark/internal/store"
	"ironbark/internal/store/storetest"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// clock is the test's time: the Cloud reads it, the test moves it.
type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }

// A day of a small cloud's life, with the controller killed and started
// again between an instance's running and its terminate, and its node
// silent for a while: the usage report holds exact hours, the same on
// both engines, before and after the old events are rolled up. By hand:
// alice's m1.small ran 08:00-15:00 and 16:00-18:00 (9 h), dev's c1.medium
// 08:00-18:00 (10 h, 20 core-hours), both on one node silent 13:00-14:30
// (1.5 h each reported silent, not counted); bob held an address
// 09:00-19:00.
func TestUsageAcrossRestarts(t *testing.T) {
	storetest.Each(t, Migrations(), func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		clk := &clock{t: time.Date(2026, 11, 2, 8, 0, 0, 0, time.UTC)}
		e := newTestEnv(t, db)
		e.cloud.now = clk.now
		dev := must[Account](t)(CreateUser(ctx, db, "alice", "dev", false))

		// 08:00 alice runs one m1.small, dev one c1.medium (2 cores)
		// with a public address; the nodes report them running at 08:00.
		a := e.run(e.client(e.alice), 1, "")
		big, err := e.client(dev).RunInstances(ctx, &sdk.RunInstancesInput{ImageId: aws.String(e.image), MinCount: aws.Int32(1),
			MaxCount: aws.Int32(1), InstanceType: "c1.medium"})
		if err != nil {
			t.Fatal(err)
		}
		idA, idB := *a.Instances[0].InstanceId, *big.Instances[0].InstanceId
		e.observe(t, []string{idA, idB}, nodeapi.StateRunning)
		// 09:00 bob allocates an address.
		clk.advance(time.Hour)
		addr, err := e.client(e.bob).AllocateAddress(ctx, &sdk.AllocateAddressInput{})
		if err != nil {
			t.Fatal(err)
		}

		// 10:00 the controller is killed; it starts again at 12:00 on the
		// same store. The node kept the instances running meanwhile.
		clk.advance(time.Hour)
		e.stop()
		clk.advance(2 * time.Hour)
		e.start()
		e.cloud.now = clk.now
		e.observe(t, []string{idA, idB}, nodeapi.StateRunning) // the agent re-adopted them: no change

		// dev's node falls silent from 13:00 (its last heartbeat) until
		// 14:30, as the cluster side records it.
		var nodeB string
		if err := db.QueryRow(ctx, `SELECT node_id FROM instances WHERE id = ?`, idB).Scan(&nodeB); err != nil {
			t.Fatal(err)
		}
		silence := func(down bool, at time.Time) {
			t.Helper()
			if err := db.InTx(ctx, func(tx *store.Tx) error { return e.cloud.NodeSilence(ctx, tx, nodeB, down, at) }); err != nil {
				t.Fatal(err)
			}
		}
		silence(true, clk.t.Add(time.Hour))
		silence(false, clk.t.Add(150*time.Minute))

		// 15:00 alice stops hers (stopped at 15:00 as the node says), 16:00
		// starts it again (running at 16:00), 18:00 terminates both.
		clk.advance(3 * time.Hour)
		if _, err := e.client(e.alice).StopInstances(ctx, &sdk.StopInstancesInput{InstanceIds: []string{idA}}); err != nil {
			t.Fatal(err)
		}
		e.observe(t, []string{idA}, nodeapi.StateStopped)
		clk.advance(time.Hour)
		if _, err := e.client(e.alice).StartInstances(ctx, &sdk.StartInstancesInput{InstanceIds: []string{idA}}); err != nil {
			t.Fatal(err)
		}
		e.observe(t, []string{idA}, nodeapi.StateRunning)
		clk.advance(2 * time.Hour)
		for _, c := range []*sdk.Client{e.client(e.alice), e.client(dev)} {
			if _, err := c.TerminateInstances(ctx, &sdk.TerminateInstancesInput{InstanceIds: []string{idA, idB}}); err != nil {
				// each owner terminates its own: alice's call covers both
				// (dev is alice's user), the second finds them ended
				t.Fatal(err)
			}
		}
		e.observe(t, []string{idA, idB}, nodeapi.StateTerminated)
		// 19:00 bob gives his address back.
		clk.advance(time.Hour)
		if _, err := e.client(e.bob).ReleaseAddress(ctx, &sdk.ReleaseAddressInput{AllocationId: addr.AllocationId}); err != nil {
			t.Fatal(err)
		}

		// The report at 20:00 for the day, by each dimension.
		clk.advance(time.Hour)
		day := UsageQuery{Since: time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC), Until: time.Date(2026, 11, 3, 0, 0, 0, 0, time.UTC)}
		got := map[string]UsageReport{}
		for _, by := range usage.Dimensions() {
			q := day
			q.By = by
			got[by] = must[UsageReport](t)(ReportUsage(ctx, db, q, clk.t))
			for i := range got[by].Lines {
				got[by].Lines[i].AccountID = "" // random per run
			}
		}
		golden(t, "usage-day.json", got)

		// Rolled up (as the background job does, days later), the report
		// of the whole day is the same.
		if _, err := usage.Rollup(ctx, db, clk.t.Add(72*time.Hour)); err != nil {
			t.Fatal(err)
		}
		for _, by := range usage.Dimensions() {
			q := day
			q.By = by
			r := must[UsageReport](t)(ReportUsage(ctx, db, q, clk.t.Add(73*time.Hour)))
			for i := range r.Lines {
				r.Lines[i].AccountID = ""
			}
			if a, b := mustJSON(t, r.Lines), mustJSON(t, got[by].Lines); a != b {
				t.Fatalf("by %s after the roll-up:\n%s\nwant\n%s", by, a, b)
			}
		}
	})
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// golden compares v as indented JSON with testdata/name (-update
// rewrites it).
func golden(t *testing.T, name string, v any) {
	t.Helper()
	got := mustJSON(t, v) + "\n"
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Fatalf("%s differs (-update rewrites it):\n%s", path, got)
	}
}

// BenchmarkRunInstancesAccounting launches one instance at a time for an
// account that holds 10,000, with neither the usage record nor quotas,
// and with both (each launch then records its event and counts what the
// account holds): the goal is at least 0.9x the throughput
// without.
func BenchmarkRunInstancesAccounting(b *testing.B) {
	for _, on := range []bool{false, true} {
		name := "off"
		if on {
			name = "on"
		}
		b.Run(name, func(b *testing.B) {
			cloud, e := benchCloud(b)
			cloud.noUsage = !on
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
