package usage

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"ironbark/internal/store"
)

// Dimensions a report groups by.
const (
	ByAccount = "account"
	ByUser    = "user" // an account's users, and the account's own use (user "")
	ByType    = "type"
	ByZone    = "zone"
	ByNode    = "node"
)

// Dimensions lists the report groupings in the order `--by` shows them.
func Dimensions() []string { return []string{ByAccount, ByUser, ByType, ByZone, ByNode} }

// Group is one line of a report: the dimensions it groups by are set
// (Account is an account id; ByUser sets Account and User), and the
// totals.
type Group struct {
	Account, User, VMType, Zone, Node string
	Totals
}

// Report is the usage of a period.
type Report struct {
	Since, Until time.Time // Until is at most the time it was computed
	By           string
	// Horizon is where the hourly buckets end: a period reaching before
	// it counts each whole hour that starts inside the period.
	Horizon time.Time
	Groups  []Group
}

// Hours converts milliseconds to hours.
func Hours(ms int64) float64 { return float64(ms) / float64(hourMS) }

// GiBHours converts KiB-seconds to GiB-hours.
func GiBHours(kibS int64) float64 { return float64(kibS) / (1024 * 1024 * 3600) }

// Compute reports the usage of [since, until) grouped by `by`; an
// until after now ends at now, where what is still in use stops
// accruing for this report.
func Compute(ctx context.Context, q store.Querier, since, until, now time.Time, by string) (Report, error) {
	if !slices.Contains(Dimensions(), by) {
		return Report{}, fmt.Errorf("usage by %q: want one of %s", by, strings.Join(Dimensions(), ", "))
	}
	// Events are stamped to the millisecond: a report that ends now reads
	// those of the current millisecond too (they happened before now).
	clamped := !until.Before(now)
	if clamped {
		until = now
	}
	if !since.Before(until) {
		return Report{}, fmt.Errorf("usage from %s until %s: the period is empty", since.Format(time.RFC3339), until.Format(time.RFC3339))
	}
	rep := Report{Since: since.UTC(), Until: until.UTC(), By: by}
	var horizon int64
	if err := q.QueryRow(ctx, `SELECT horizon FROM usage_horizon WHERE name = 'rollup'`).Scan(&horizon); err != nil {
		return Report{}, fmt.Errorf("usage horizon: %w", err)
	}
	if horizon > 0 {
		rep.Horizon = time.UnixMilli(horizon).UTC()
	}
	groups := map[Group]*Totals{}
	addTo := func(k Group, t Totals) {
		g := groups[k]
		if g == nil {
			g = &Totals{}
			groups[k] = g
		}
		g.add(t)
	}
	from, to := since.UnixMilli(), until.UnixMilli()
	if from < horizon {
		rows, err := q.Query(ctx, `SELECT account_id, user_name, vm_type, zone, node_id, SUM(instance_ms), SUM(core_ms),
			SUM(silent_ms), SUM(address_ms), SUM(image_kib_s) FROM usage_hours WHERE dim = ? AND hour >= ? AND hour < ?
			GROUP BY account_id, user_name, vm_type, zone, node_id`, by, from, min(to, horizon))
		if err != nil {
			return Report{}, fmt.Errorf("usage buckets: %w", err)
		}
		for rows.Next() {
			var a, u, vt, z, n string
			var t Totals
			if err := rows.Scan(&a, &u, &vt, &z, &n, &t.InstanceMS, &t.CoreMS, &t.SilentMS, &t.AddressMS, &t.ImageKiBS); err != nil {
				rows.Close()
				return Report{}, fmt.Errorf("usage buckets: %w", err)
			}
			addTo(Group{Account: a, User: u, VMType: vt, Zone: z, Node: n}, t)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return Report{}, fmt.Errorf("usage buckets: %w", err)
		}
	}
	if to > horizon {
		from = max(from, horizon)
		before := to
		if clamped {
			before++
		}
		downs, err := nodeSilences(ctx, q, before, from, to)
		if err != nil {
			return Report{}, err
		}
		w := &accrual{from: from, to: to, downs: downs, emit: func(open *Event, a, b int64, silent bool) {
			addTo(groupOf(by, open), amount(open, a, b, silent))
		}}
		if err := eachEvent(ctx, q, false, before, w.add); err != nil {
			return Report{}, err
		}
		w.finish()
	}
	for k, t := range groups {
		k.Totals = *t
		rep.Groups = append(rep.Groups, k)
	}
	slices.SortFunc(rep.Groups, func(a, b Group) int {
		return strings.Compare(a.Account+"\x00"+a.User+"\x00"+a.VMType+"\x00"+a.Zone+"\x00"+a.Node,
			b.Account+"\x00"+b.User+"\x00"+b.VMType+"\x00"+b.Zone+"\x00"+b.Node)
	})
	return rep, nil
}

// groupOf is the group an opened resource's time counts under when a
// report groups by `by`: only that dimension (with --by user, the
// account too) is set.
func groupOf(by string, e *Event) Group {
	switch by {
	case ByAccount:
		return Group{Account: e.Account}
	case ByUser:
		return Group{Account: e.Account, User: e.User}
	case ByType:
		return Group{VMType: e.VMType}
	case ByZone:
		return Group{Zone: e.Zone}
	}
	return Group{Node: e.Node}
}
