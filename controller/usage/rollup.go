package usage

import (
	"context"
	"fmt"
	"time"

	"ironbark/internal/store"
)

// bucketKey is one hourly bucket: the grouping it is kept for, the hour
// and the group.
type bucketKey struct {
	dim  string
	hour int64
	g    Group
}

// Horizon is the time before which the record holds hourly buckets
// only (zero: nothing rolled up yet).
func Horizon(ctx context.Context, q store.Querier) (time.Time, error) {
	var h int64
	if err := q.QueryRow(ctx, `SELECT horizon FROM usage_horizon WHERE name = 'rollup'`).Scan(&h); err != nil {
		return time.Time{}, fmt.Errorf("usage horizon: %w", err)
	}
	if h == 0 {
		return time.Time{}, nil
	}
	return time.UnixMilli(h).UTC(), nil
}

// Rollup folds every event before `before` (cut down to a whole UTC hour)
// into hourly buckets and deletes them, leaving for each resource still
// in use then one event at the new horizon that carries its state on. It
// returns how many events it folded. Keep the last hours raw (the
// controller's job rolls up to now - 6h): an event is stamped before its
// transaction commits, and one older than the horizon when it lands
// would be lost.
func Rollup(ctx context.Context, db *store.DB, before time.Time) (int, error) {
	target := floorHour(before.UnixMilli())
	var folded int
	err := db.InTx(ctx, func(tx *store.Tx) error {
		folded = 0
		// One roll-up at a time, across controllers (the row lock).
		if _, err := tx.Exec(ctx, `UPDATE usage_horizon SET horizon = horizon WHERE name = 'rollup'`); err != nil {
			return err
		}
		var horizon int64
		if err := tx.QueryRow(ctx, `SELECT horizon FROM usage_horizon WHERE name = 'rollup'`).Scan(&horizon); err != nil {
			return err
		}
		if target <= horizon {
			return nil
		}
		// Resources with an event at the new horizon itself need no
		// checkpoint: that event carries them on.
		type res struct{ kind, resource string }
		atTarget := map[res]bool{}
		rows, err := tx.Query(ctx, `SELECT kind, resource FROM usage_events WHERE at = ?`, target)
		if err != nil {
			return err
		}
		for rows.Next() {
			var r res
			if err := rows.Scan(&r.kind, &r.resource); err != nil {
				rows.Close()
				return err
			}
			atTarget[r] = true
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		var carry []Event
		lastOf := func(e *Event) {
			if opens(e.Kind, e.State) && !atTarget[res{e.Kind, e.Resource}] {
				c := *e
				c.At = time.UnixMilli(target).UTC()
				carry = append(carry, c)
			}
		}
		var nodeEvs []Event
		if err := eachEvent(ctx, tx, true, target, func(e Event) { nodeEvs = append(nodeEvs, e) }); err != nil {
			return err
		}
		downs := silences(nodeEvs, horizon, target)
		nw := &accrual{from: horizon, to: target, emit: func(*Event, int64, int64, bool) {}, lastOf: lastOf}
		for _, e := range nodeEvs {
			nw.add(e)
		}
		nw.finish()
		buckets := map[bucketKey]*Totals{}
		dims := Dimensions()
		w := &accrual{from: horizon, to: target, downs: downs, lastOf: lastOf,
			emit: func(open *Event, a, b int64, silent bool) {
				for h := floorHour(a); h < b; h += hourMS {
					amt := amount(open, max(a, h), min(b, h+hourMS), silent)
					for _, dim := range dims {
						k := bucketKey{dim, h, groupOf(dim, open)}
						t := buckets[k]
						if t == nil {
							t = &Totals{}
							buckets[k] = t
						}
						t.add(amt)
					}
				}
			}}
		if err := eachEvent(ctx, tx, false, target, func(e Event) { folded++; w.add(e) }); err != nil {
			return err
		}
		w.finish()
		folded += len(nodeEvs)
		for k, t := range buckets {
			if _, err := tx.Exec(ctx, `INSERT INTO usage_hours (dim, hour, account_id, user_name, vm_type, zone, node_id,
				instance_ms, core_ms, silent_ms, address_ms, image_kib_s) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
				ON CONFLICT (dim, hour, account_id, user_name, vm_type, zone, node_id) DO UPDATE SET
				instance_ms = usage_hours.instance_ms + excluded.instance_ms, core_ms = usage_hours.core_ms + excluded.core_ms,
				silent_ms = usage_hours.silent_ms + excluded.silent_ms, address_ms = usage_hours.address_ms + excluded.address_ms,
				image_kib_s = usage_hours.image_kib_s + excluded.image_kib_s`,
				k.dim, k.hour, k.g.Account, k.g.User, k.g.VMType, k.g.Zone, k.g.Node,
				t.InstanceMS, t.CoreMS, t.SilentMS, t.AddressMS, t.ImageKiBS); err != nil {
				return err
			}
		}
		if _, err := tx.Exec(ctx, `DELETE FROM usage_events WHERE at < ?`, target); err != nil {
			return err
		}
		if err := Record(ctx, tx, carry...); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE usage_horizon SET horizon = ? WHERE name = 'rollup'`, target)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("usage roll-up: %w", err)
	}
	return folded, nil
}
