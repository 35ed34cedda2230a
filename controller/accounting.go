package controller

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"ironbark/controller/usage"
	"ironbark/internal/store"
)

// Usage accounting, the controller's side: instance, address and image
// state changes record themselves (run.go, lifecycle.go, ledger.go,
// failure.go, addresses.go, images.go) in their own transactions; this
// file records node silences for the cluster side, rolls old events up
// and reads reports with account names.

// UsageRawFor is how long usage events stay raw before the background
// job rolls them into hourly buckets: long enough that no event stamped
// before its transaction commits (or by a controller whose clock is a
// little behind) can land behind the roll-up's horizon, short enough
// that a report reads little but buckets. Reports of periods that start
// within it are exact to the millisecond; before it, to the hour.
const UsageRawFor = 6 * time.Hour

// NodeSilence implements cluster.NodeSilences: the usage record learns
// when a node went silent (at its last heartbeat) and when it was heard
// again.
func (c *Cloud) NodeSilence(ctx context.Context, tx *store.Tx, nodeID string, down bool, at time.Time) error {
	state := usage.StateUp
	if down {
		state = usage.StateDown
	}
	return usage.Record(ctx, tx, usage.Event{At: at, Kind: usage.KindNode, Resource: nodeID, State: state, Node: nodeID})
}

// RunUsageRollup rolls usage events older than UsageRawFor into hourly
// buckets every interval until ctx ends.
func (c *Cloud) RunUsageRollup(ctx context.Context, interval time.Duration) {
	c.every(ctx, interval, "usage roll-up", func(ctx context.Context) error {
		n, err := usage.Rollup(ctx, c.db, c.now().Add(-UsageRawFor))
		if n > 0 {
			c.log.Info("usage events rolled up into hourly buckets", "events", n)
		}
		return err
	})
}

// UsageQuery selects a usage report: the period and the grouping
// (usage.ByAccount, ...).
type UsageQuery struct {
	Since, Until time.Time
	By           string
}

// UsageLine is one line of a usage report, in hours, with the account's
// name where the report groups by account or user.
type UsageLine struct {
	Account       string  `json:"account,omitempty"` // name (the id if the account is gone)
	AccountID     string  `json:"account_id,omitempty"`
	User          string  `json:"user,omitempty"` // "" with --by user: the account's own keys
	Type          string  `json:"type,omitempty"`
	Zone          string  `json:"zone,omitempty"`
	Node          string  `json:"node,omitempty"`
	InstanceHours float64 `json:"instance_hours"`
	CoreHours     float64 `json:"core_hours"`
	SilentHours   float64 `json:"silent_hours"` // instance time while its node was silent
	AddressHours  float64 `json:"address_hours"`
	ImageGiBHours float64 `json:"image_gib_hours"`
}

// UsageReport is a usage report as `ironbark report usage` prints it.
type UsageReport struct {
	Since   time.Time   `json:"since"`
	Until   time.Time   `json:"until"`
	By      string      `json:"by"`
	Horizon *time.Time  `json:"rolled_up_before,omitempty"` // whole hours before it
	Lines   []UsageLine `json:"lines"`
}

// ReportUsage computes a usage report at now.
func ReportUsage(ctx context.Context, db *store.DB, q UsageQuery, now time.Time) (UsageReport, error) {
	r, err := usage.Compute(ctx, db, q.Since, q.Until, now, q.By)
	if err != nil {
		return UsageReport{}, err
	}
	names := map[string]string{}
	if q.By == usage.ByAccount || q.By == usage.ByUser {
		rows, err := db.Query(ctx, `SELECT id, name FROM accounts`)
		if err != nil {
			return UsageReport{}, fmt.Errorf("usage report: %w", err)
		}
		for rows.Next() {
			var id, name string
			if err := rows.Scan(&id, &name); err != nil {
				rows.Close()
				return UsageReport{}, fmt.Errorf("usage report: %w", err)
			}
			names[id] = name
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return UsageReport{}, fmt.Errorf("usage report: %w", err)
		}
	}
	out := UsageReport{Since: r.Since, Until: r.Until, By: r.By, Lines: []UsageLine{}}
	if !r.Horizon.IsZero() && r.Since.Before(r.Horizon) {
		h := r.Horizon
		out.Horizon = &h
	}
	for _, g := range r.Groups {
		l := UsageLine{AccountID: g.Account, User: g.User, Type: g.VMType, Zone: g.Zone, Node: g.Node,
			InstanceHours: usage.Hours(g.InstanceMS), CoreHours: usage.Hours(g.CoreMS), SilentHours: usage.Hours(g.SilentMS),
			AddressHours: usage.Hours(g.AddressMS), ImageGiBHours: usage.GiBHours(g.ImageKiBS)}
		if g.Account != "" {
			l.Account = names[g.Account]
			if l.Account == "" {
				l.Account = g.Account
			}
		}
		out.Lines = append(out.Lines, l)
	}
	slices.SortFunc(out.Lines, func(a, b UsageLine) int {
		return cmp.Or(strings.Compare(a.Account, b.Account), strings.Compare(a.User, b.User), strings.Compare(a.Type, b.Type),
			strings.Compare(a.Zone, b.Zone), strings.Compare(a.Node, b.Node))
	})
	return out, nil
}
