package usage

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"ironbark/internal/store"
	"ironbark/internal/store/storetest"
)

// seedEvents writes n events of a busy cloud over days days before end:
// 2,000 instances (10 accounts, 3 users each, 2 types, 2 zones, 40 nodes)
// that start and stop every few hours, addresses, images, node silences.
func seedEvents(b *testing.B, db *store.DB, n int, days int, end time.Time) {
	b.Helper()
	ctx := context.Background()
	start := end.Add(-time.Duration(days) * 24 * time.Hour)
	const resources = 2000
	step := time.Duration(int64(end.Sub(start)) / int64(n/resources)) // the last round falls in the raw hours
	states := []string{"pending", StateRunning, "stopping", "stopped"}
	const batch = 500
	var sb strings.Builder
	var args []any
	flush := func(tx *store.Tx) error {
		if len(args) == 0 {
			return nil
		}
		q := `INSERT INTO usage_events (at, kind, resource, state, account_id, user_name, vm_type, cores, zone, node_id, bytes) VALUES ` +
			strings.TrimSuffix(sb.String(), ",")
		sb.Reset()
		_, err := tx.Exec(ctx, q, args...)
		args = args[:0]
		return err
	}
	err := db.InTx(ctx, func(tx *store.Tx) error {
		for i := range n {
			r := i % resources
			round := i / resources
			at := start.Add(time.Duration(round)*step + time.Duration(r)*time.Second).UnixMilli()
			kind, res, state, bytes := KindInstance, fmt.Sprintf("i-%05d", r), states[round%len(states)], int64(0)
			switch {
			case r%50 == 0:
				kind, res, state = KindNode, fmt.Sprintf("n%02d", r%40), []string{StateDown, StateUp}[round%2]
			case r%20 == 1:
				kind, res, state = KindAddress, fmt.Sprintf("198.51.%d.%d", r/250, r%250), []string{StateHeld, StateReleased}[round%2]
			case r%20 == 2:
				kind, res, state, bytes = KindImage, fmt.Sprintf("emi-%05d", r), []string{StateStored, StateRemoved}[round%2], int64(r)<<20
			}
			sb.WriteString("(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?),")
			args = append(args, at, kind, res, state, fmt.Sprintf("1000000000%02d", r%10), []string{"", "dev", "ops"}[r%3],
				[]string{"m1.small", "c1.medium"}[r%2], int64(1+r%2), fmt.Sprintf("zone-%d", r%2), fmt.Sprintf("n%02d", r%40), bytes)
			if len(args) == batch*11 {
				if err := flush(tx); err != nil {
					return err
				}
			}
		}
		return flush(tx)
	})
	if err != nil {
		b.Fatal(err)
	}
}

// BenchmarkUsageReport is a 90-day report by account over a record of
// 1,000,000 events: computed from the raw events, and from the same
// record rolled up (everything but the last 6 hours in hourly buckets),
// as the controller keeps it (controller.UsageRawFor). The goal:
// under a second.
func BenchmarkUsageReport(b *testing.B) {
	ctx := context.Background()
	end := time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC)
	since := end.Add(-90 * 24 * time.Hour)
	raw := storetest.SQLite(b, []store.Migration{Migration()})
	seedEvents(b, raw, 1_000_000, 90, end)
	rolled := storetest.SQLite(b, []store.Migration{Migration()})
	seedEvents(b, rolled, 1_000_000, 90, end)
	if _, err := Rollup(ctx, rolled, end.Add(-6*time.Hour)); err != nil {
		b.Fatal(err)
	}
	var left int
	rolled.QueryRow(ctx, `SELECT COUNT(*) FROM usage_events`).Scan(&left)
	var want string
	for _, tc := range []struct {
		name string
		db   *store.DB
	}{{"raw-events", raw}, {"rolled-up", rolled}} {
		b.Run(tc.name, func(b *testing.B) {
			var r Report
			for b.Loop() {
				var err error
				if r, err = Compute(ctx, tc.db, since, end, end, ByAccount); err != nil {
					b.Fatal(err)
				}
			}
			// Both must say the same, or the comparison means nothing
			// (image KiB-seconds round once per hour when rolled up).
			got := ""
			for _, g := range r.Groups {
				got += fmt.Sprintf("%s %d %d %d %d %.3f\n", g.Account, g.InstanceMS, g.CoreMS, g.SilentMS, g.AddressMS, GiBHours(g.ImageKiBS))
			}
			if want == "" {
				want = got
			} else if got != want {
				b.Fatalf("rolled-up report differs from the raw one:\n%s\n%s", got, want)
			}
			if tc.name == "rolled-up" {
				b.ReportMetric(float64(left), "raw-events-left")
			}
		})
	}
}
