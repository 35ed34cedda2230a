package usage

import (
	"context"
	"fmt"
	"time"

	"ironbark/internal/store"
)

// Kinds of resource the record follows.
const (
	KindInstance = "instance"
	KindAddress  = "address"
	KindImage    = "image"
	KindNode     = "node" // a node's silences: StateDown and StateUp
)

// States that open or close a resource's use. An instance's events carry
// its EC2 state names (pending, running, stopping, stopped,
// shutting-down, terminated); only running accrues.
const (
	StateRunning  = "running"
	StateHeld     = "held"     // an address is allocated to an account
	StateReleased = "released" // ... and given back
	StateStored   = "stored"   // an image is registered
	StateRemoved  = "removed"  // ... and deregistered
	StateDown     = "down"     // a node's heartbeats stopped (At: the last one)
	StateUp       = "up"       // ... and started again
)

// opens reports whether a state starts accruing time for its kind.
func opens(kind, state string) bool {
	switch kind {
	case KindInstance:
		return state == StateRunning
	case KindAddress:
		return state == StateHeld
	case KindImage:
		return state == StateStored
	case KindNode:
		return state == StateDown
	}
	return false
}

// Event is one entry of the record. The dimensions (account, user, type,
// zone, node, cores, bytes) are the resource's when the event happened:
// an interval is reported under those of the event that opened it.
type Event struct {
	At       time.Time
	Kind     string
	Resource string // instance id, public address, image id or node id
	State    string
	Account  string // account id
	User     string
	VMType   string
	Cores    int64
	Zone     string
	Node     string
	Bytes    int64 // an image's size
}

// Migration makes the record's tables: the raw events, the hourly
// buckets older events roll up into, and the roll-up's horizon. Each
// hour is kept once per report grouping (dim: account, user, type, zone,
// node, with the other dimensions empty), so a report reads only its
// own grouping's rows.
func Migration() store.Migration {
	const events = `
	at         BIGINT NOT NULL,
	kind       TEXT NOT NULL,
	resource   TEXT NOT NULL,
	state      TEXT NOT NULL,
	account_id TEXT NOT NULL DEFAULT '',
	user_name  TEXT NOT NULL DEFAULT '',
	vm_type    TEXT NOT NULL DEFAULT '',
	cores      BIGINT NOT NULL DEFAULT 0,
	zone       TEXT NOT NULL DEFAULT '',
	node_id    TEXT NOT NULL DEFAULT '',
	bytes      BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX usage_events_at ON usage_events(at);
CREATE TABLE usage_hours (
	dim         TEXT NOT NULL,
	hour        BIGINT NOT NULL,
	account_id  TEXT NOT NULL,
	user_name   TEXT NOT NULL,
	vm_type     TEXT NOT NULL,
	zone        TEXT NOT NULL,
	node_id     TEXT NOT NULL,
	instance_ms BIGINT NOT NULL DEFAULT 0,
	core_ms     BIGINT NOT NULL DEFAULT 0,
	silent_ms   BIGINT NOT NULL DEFAULT 0,
	address_ms  BIGINT NOT NULL DEFAULT 0,
	image_kib_s BIGINT NOT NULL DEFAULT 0,
	PRIMARY KEY (dim, hour, account_id, user_name, vm_type, zone, node_id)
);
CREATE TABLE usage_horizon (
	name    TEXT PRIMARY KEY,
	horizon BIGINT NOT NULL
);
INSERT INTO usage_horizon (name, horizon) VALUES ('rollup', 0);
`
	return store.Migration{ID: "controller/0018-usage-record",
		SQL:      `CREATE TABLE usage_events (seq INTEGER PRIMARY KEY,` + events,
		Postgres: `CREATE TABLE usage_events (seq BIGSERIAL PRIMARY KEY,` + events,
	}
}

// Record appends events to the record, in the caller's transaction: the
// one that changes the resources' state, so the record and the state
// never disagree.
func Record(ctx context.Context, tx store.Execer, evs ...Event) error {
	if len(evs) == 0 {
		return nil
	}
	// One statement for them all: a launch of ten instances recorded a
	// row per round trip, inside the transaction that holds the
	// placement lock.
	args := make([]any, 0, 11*len(evs))
	for _, e := range evs {
		args = append(args, e.At.UnixMilli(), e.Kind, e.Resource, e.State, e.Account, e.User, e.VMType, e.Cores, e.Zone, e.Node, e.Bytes)
	}
	if err := store.ExecRows(ctx, tx, `INSERT INTO usage_events (at, kind, resource, state, account_id, user_name, vm_type, cores,
		zone, node_id, bytes) VALUES`, 11, args, ""); err != nil {
		e := evs[0]
		return fmt.Errorf("usage record %s %s %s (of %d events): %w", e.Kind, e.Resource, e.State, len(evs), err)
	}
	return nil
}

// eachEvent calls fn with every event of the kinds selected (node
// events, or all others) with at < before, in the order accrual reads
// them: resource by resource, in time order. The rows are closed before
// it returns.
func eachEvent(ctx context.Context, q store.Querier, node bool, before int64, fn func(Event)) error {
	cond := "kind <> 'node'"
	if node {
		cond = "kind = 'node'"
	}
	rows, err := q.Query(ctx, `SELECT at, kind, resource, state, account_id, user_name, vm_type, cores, zone, node_id, bytes
		FROM usage_events WHERE `+cond+` AND at < ? ORDER BY kind, resource, at, seq`, before)
	if err != nil {
		return fmt.Errorf("read usage events: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var e Event
		var at int64
		if err := rows.Scan(&at, &e.Kind, &e.Resource, &e.State, &e.Account, &e.User, &e.VMType, &e.Cores, &e.Zone, &e.Node, &e.Bytes); err != nil {
			return fmt.Errorf("read usage events: %w", err)
		}
		e.At = time.UnixMilli(at).UTC()
		fn(e)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read usage events: %w", err)
	}
	return nil
}

// nodeSilences reads the node events before `before` into silent spans
// within [from, to).
func nodeSilences(ctx context.Context, q store.Querier, before, from, to int64) (map[string][]span, error) {
	var evs []Event
	if err := eachEvent(ctx, q, true, before, func(e Event) { evs = append(evs, e) }); err != nil {
		return nil, err
	}
	return silences(evs, from, to), nil
}
