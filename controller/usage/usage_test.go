package usage

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"ironbark/internal/store"
	"ironbark/internal/store/storetest"
)

var t0 = time.Date(2026, 11, 2, 8, 0, 0, 0, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }

func record(t *testing.T, db *store.DB, evs ...Event) {
	t.Helper()
	if err := Record(context.Background(), db, evs...); err != nil {
		t.Fatal(err)
	}
}

func vm(id, state string, d time.Duration) Event {
	return Event{At: at(d), Kind: KindInstance, Resource: id, State: state, Account: "111111111111", User: "dev",
		VMType: "m1.small", Cores: 2, Zone: "z1", Node: "n1"}
}

func compute(t *testing.T, db *store.DB, since, until, now time.Time, by string) Report {
	t.Helper()
	r, err := Compute(context.Background(), db, since, until, now, by)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func only(t *testing.T, r Report) Totals {
	t.Helper()
	if len(r.Groups) != 1 {
		t.Fatalf("groups %+v, want one", r.Groups)
	}
	return r.Groups[0].Totals
}

// Time accrues while running as the node said, stops at stop and
// terminate, and a period cuts it; what still runs accrues to now.
func TestInstanceHours(t *testing.T) {
	storetest.Each(t, []store.Migration{Migration()}, func(t *testing.T, db *store.DB) {
		record(t, db,
			vm("i-1", "pending", 0), vm("i-1", StateRunning, time.Minute),
			vm("i-1", "stopping", 61*time.Minute), vm("i-1", "stopped", 62*time.Minute),
			vm("i-1", "pending", 2*time.Hour), vm("i-1", StateRunning, 2*time.Hour+time.Minute),
			vm("i-1", "shutting-down", 3*time.Hour+time.Minute), vm("i-1", "terminated", 3*time.Hour+2*time.Minute))
		got := only(t, compute(t, db, at(0), at(24*time.Hour), at(48*time.Hour), ByAccount))
		if got.InstanceMS != 2*hourMS || got.CoreMS != 4*hourMS || got.SilentMS != 0 {
			t.Fatalf("whole run: %+v", got)
		}
		got = only(t, compute(t, db, at(31*time.Minute), at(2*time.Hour+31*time.Minute), at(48*time.Hour), ByType))
		if got.InstanceMS != hourMS {
			t.Fatalf("a cut period: %v hours", Hours(got.InstanceMS))
		}
		record(t, db, vm("i-2", StateRunning, 10*time.Hour))
		r := compute(t, db, at(0), at(100*time.Hour), at(12*time.Hour), ByNode)
		if !r.Until.Equal(at(12*time.Hour)) || only(t, r).InstanceMS != 4*hourMS {
			t.Fatalf("to now: until %s, %+v", r.Until, r.Groups)
		}
		if _, err := Compute(context.Background(), db, at(0), at(0), at(1), ByNode); err == nil {
			t.Fatal("an empty period reported")
		}
		if _, err := Compute(context.Background(), db, at(0), at(time.Hour), at(2*time.Hour), "colour"); err == nil {
			t.Fatal("--by colour accepted")
		}
	})
}

// A node's silence is reported apart, for every instance on it, and
// the rest of their time stays instance time.
func TestSilentNode(t *testing.T) {
	storetest.Each(t, []store.Migration{Migration()}, func(t *testing.T, db *store.DB) {
		other := vm("i-2", StateRunning, 0)
		other.Node = "n2"
		record(t, db, vm("i-1", StateRunning, 0), other,
			Event{At: at(30 * time.Minute), Kind: KindNode, Resource: "n1", State: StateDown},
			Event{At: at(45 * time.Minute), Kind: KindNode, Resource: "n1", State: StateUp},
			Event{At: at(90 * time.Minute), Kind: KindNode, Resource: "n1", State: StateDown})
		r := compute(t, db, at(0), at(2*time.Hour), at(2*time.Hour), ByNode)
		if len(r.Groups) != 2 {
			t.Fatal(r.Groups)
		}
		n1, n2 := r.Groups[0], r.Groups[1]
		if n1.Node != "n1" || n1.InstanceMS != 75*60*1000 || n1.SilentMS != 45*60*1000 || n1.CoreMS != 2*n1.InstanceMS {
			t.Fatalf("n1: %+v", n1)
		}
		if n2.InstanceMS != 2*hourMS || n2.SilentMS != 0 {
			t.Fatalf("n2: %+v", n2)
		}
	})
}

// Addresses and images accrue while held and stored.
func TestAddressAndImageHours(t *testing.T) {
	storetest.Each(t, []store.Migration{Migration()}, func(t *testing.T, db *store.DB) {
		a := "222222222222"
		record(t, db,
			Event{At: at(0), Kind: KindAddress, Resource: "198.51.100.1", State: StateHeld, Account: a},
			Event{At: at(3 * time.Hour), Kind: KindAddress, Resource: "198.51.100.1", State: StateReleased, Account: a},
			Event{At: at(0), Kind: KindImage, Resource: "emi-1", State: StateStored, Account: a, Bytes: 2 << 30},
			Event{At: at(5 * time.Hour), Kind: KindImage, Resource: "emi-1", State: StateRemoved, Account: a})
		got := only(t, compute(t, db, at(0), at(24*time.Hour), at(24*time.Hour), ByAccount))
		if Hours(got.AddressMS) != 3 || GiBHours(got.ImageKiBS) != 10 || got.InstanceMS != 0 {
			t.Fatalf("%v address-hours, %v GiB-hours", Hours(got.AddressMS), GiBHours(got.ImageKiBS))
		}
	})
}

// Rolling old events into hourly buckets changes no report over whole
// hours, however the events fall, and leaves the record small: what is
// still in use is carried over the horizon.
func TestRollupKeepsReports(t *testing.T) {
	storetest.Each(t, []store.Migration{Migration()}, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		evs := randomEvents(rand.New(rand.NewPCG(1, 2)), 40, 400, 72*time.Hour)
		record(t, db, evs...)
		now := at(80 * time.Hour)
		periods := [][2]time.Duration{{0, 80 * time.Hour}, {5 * time.Hour, 30 * time.Hour}, {40 * time.Hour, 41 * time.Hour}, {30 * time.Hour, 75 * time.Hour}}
		before := map[string]Report{}
		for _, p := range periods {
			for _, by := range Dimensions() {
				before[fmt.Sprint(p, by)] = compute(t, db, at(p[0]), at(p[1]), now, by)
			}
		}
		var n0 int
		db.QueryRow(ctx, `SELECT COUNT(*) FROM usage_events`).Scan(&n0)
		// Twice, the second further on, as the background job does.
		for _, h := range []time.Duration{20*time.Hour + 17*time.Minute, 50 * time.Hour} {
			if _, err := Rollup(ctx, db, at(h)); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := Rollup(ctx, db, at(49*time.Hour)); err != nil { // behind the horizon: nothing
			t.Fatal(err)
		}
		var n1 int
		db.QueryRow(ctx, `SELECT COUNT(*) FROM usage_events`).Scan(&n1)
		if n1 >= n0/2 {
			t.Fatalf("%d events before the roll-up, %d after", n0, n1)
		}
		if h, _ := Horizon(ctx, db); !h.Equal(at(50 * time.Hour)) {
			t.Fatalf("horizon %s", h)
		}
		for _, p := range periods {
			for _, by := range Dimensions() {
				got, want := compute(t, db, at(p[0]), at(p[1]), now, by), before[fmt.Sprint(p, by)]
				if fmt.Sprint(got.Groups) != fmt.Sprint(want.Groups) {
					t.Fatalf("%v by %s after the roll-up:\n got %+v\nwant %+v", p, by, got.Groups, want.Groups)
				}
			}
		}
	})
}

// randomEvents makes n resources' lifecycles over span: instances that
// run, stop, start and end, addresses, images, and node silences; times
// are whole seconds.
func randomEvents(r *rand.Rand, resources, n int, span time.Duration) []Event {
	var out []Event
	sec := func() time.Duration { return time.Duration(r.Int64N(int64(span/time.Second))) * time.Second }
	states := []string{"pending", StateRunning, StateRunning, "stopping", "stopped", "shutting-down", "terminated"}
	for i := range n {
		id := i % resources
		e := Event{At: at(sec()), Account: fmt.Sprintf("10000000000%d", id%3), User: []string{"", "dev", "ops"}[id%3]}
		switch id % 5 {
		case 0, 1, 2:
			e.Kind, e.Resource, e.State = KindInstance, fmt.Sprintf("i-%d", id), states[r.IntN(len(states))]
			e.VMType, e.Cores, e.Zone, e.Node = []string{"m1.small", "c1.medium"}[id%2], int64(1+id%2), fmt.Sprintf("z%d", id%2), fmt.Sprintf("n%d", id%4)
		case 3:
			e.Kind, e.Resource, e.State = KindAddress, fmt.Sprintf("198.51.100.%d", id), []string{StateHeld, StateReleased}[r.IntN(2)]
		case 4:
			e.Kind, e.Resource, e.State, e.Bytes = KindImage, fmt.Sprintf("emi-%d", id), []string{StateStored, StateRemoved}[r.IntN(2)], int64(1+id)<<20
		}
		out = append(out, e)
	}
	for i := range n / 20 {
		out = append(out, Event{At: at(sec()), Kind: KindNode, Resource: fmt.Sprintf("n%d", i%4), State: []string{StateDown, StateUp}[r.IntN(2)]})
	}
	return out
}
