package controller

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	"ironbark/internal/nodeapi"
	"ironbark/internal/store"
)

// Security group membership, kept incrementally. A group's members are
// the private addresses of its live instances, cloud-wide; every node that
// enforces a rule naming the group is told them. Read from the instances
// table, one group's list cost a scan of its account's instances, once per
// wake-up: a launch's cost grew with its account. Instead the store keeps a
// change log (member_changes, written by triggers on instances in the
// writing transaction, so no write path can forget it), and each
// controller keeps every live instance's membership in memory (memberLog),
// loaded once and then moved forward by reading only the log's new rows.
//
// The log's rows must become visible in seq order, or a reader that saw
// seq 10 would never read a seq 9 committed later: SQLite has one writer
// at a time, and on PostgreSQL the trigger takes a transaction-scoped
// advisory lock (store.LockMemberChanges) before taking its seq, so seqs
// are taken and committed in one order. A rolled-back transaction leaves a
// gap, which is harmless. Applying a row sets one instance's membership to
// what it became, so applying rows the load already saw is harmless too.
//
// The versions of the lists (nodeapi.MembersVersion, a hash of the
// content) are the same on every controller that has read the same rows.

// memberChangesMigration creates the log and its triggers. A change is
// logged when an instance's membership (member: in its groups' lists),
// presence on its node (present: the node enforces its groups), address
// or node changes.
func memberChangesMigration() store.Migration {
	const member = `%[1]s.state <> 'terminated' AND %[1]s.desired <> 'terminated' AND %[1]s.private_ip <> ''`
	const present = `%[1]s.state <> 'terminated' AND %[1]s.node_id <> ''`
	m := func(row string) string { return fmt.Sprintf(member, row) }
	p := func(row string) string { return fmt.Sprintf(present, row) }
	values := `(NEW.id, NEW.node_id, NEW.private_ip,
		CASE WHEN ` + m("NEW") + ` THEN 1 ELSE 0 END,
		CASE WHEN ` + p("NEW") + ` THEN 1 ELSE 0 END,
		COALESCE((SELECT groups FROM reservations WHERE id = NEW.reservation_id), '[]'),
		%s)`
	changed := `(` + m("OLD") + `) IS DISTINCT FROM (` + m("NEW") + `)
	OR (` + p("OLD") + `) IS DISTINCT FROM (` + p("NEW") + `)
	OR OLD.private_ip IS DISTINCT FROM NEW.private_ip OR OLD.node_id IS DISTINCT FROM NEW.node_id`
	const cols = `INSERT INTO member_changes (instance_id, node_id, private_ip, member, present, groups, at) VALUES `
	sqliteNow := `CAST(strftime('%s', 'now') AS INTEGER)`
	sqliteValues := fmt.Sprintf(values, sqliteNow)
	sqliteChanged := changed // SQLite reads IS DISTINCT FROM since 3.39
	return store.Migration{ID: "controller/0020-member-changes", SQL: `
CREATE TABLE member_changes (
	seq         INTEGER PRIMARY KEY AUTOINCREMENT,
	instance_id TEXT NOT NULL,
	node_id     TEXT NOT NULL,
	private_ip  TEXT NOT NULL,
	member      INTEGER NOT NULL,
	present     INTEGER NOT NULL,
	groups      TEXT NOT NULL,
	at          BIGINT NOT NULL
);
CREATE INDEX member_changes_at ON member_changes(at);
CREATE TRIGGER member_changes_insert AFTER INSERT ON instances
WHEN NEW.state <> 'terminated'
BEGIN
	` + cols + sqliteValues + `;
END;
CREATE TRIGGER member_changes_update AFTER UPDATE OF state, desired, private_ip, node_id ON instances
WHEN ` + sqliteChanged + `
BEGIN
	` + cols + sqliteValues + `;
END;
`, Postgres: `
CREATE TABLE member_changes (
	seq         BIGSERIAL PRIMARY KEY,
	instance_id TEXT NOT NULL,
	node_id     TEXT NOT NULL,
	private_ip  TEXT NOT NULL,
	member      INTEGER NOT NULL,
	present     INTEGER NOT NULL,
	groups      TEXT NOT NULL,
	at          BIGINT NOT NULL
);
CREATE INDEX member_changes_at ON member_changes(at);
CREATE FUNCTION ironbark_member_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	PERFORM pg_advisory_xact_lock(` + fmt.Sprint(store.LockMemberChanges) + `);
	` + cols + fmt.Sprintf(values, `CAST(extract(epoch FROM now()) AS BIGINT)`) + `;
	RETURN NULL;
END
$$;
CREATE TRIGGER member_changes_insert AFTER INSERT ON instances
FOR EACH ROW WHEN (NEW.state <> 'terminated') EXECUTE FUNCTION ironbark_member_change();
CREATE TRIGGER member_changes_update AFTER UPDATE OF state, desired, private_ip, node_id ON instances
FOR EACH ROW WHEN (` + changed + `) EXECUTE FUNCTION ironbark_member_change();
`}
}

// memberLogKeep is how long the log keeps a row (Purge trims it; the
// newest row always stays): a controller that has not caught up for longer
// loads every membership again.
const memberLogKeep = 10 * time.Minute

// memberLog is this controller's copy of the membership of every live
// instance, moved forward from the log. The zero value is ready: the
// first sync loads it.
type memberLog struct {
	mu     sync.Mutex
	loaded bool
	last   int64 // the newest log row applied
	insts  map[string]memberInst
	groups map[string]*memberGroup
	// touched is, per node, the newest row about an instance on it
	// (placed there, ended, moved away); base stands in for every node
	// after a load, which saw no rows. nodeMark is the larger.
	touched map[string]int64
	base    int64
	// loads and rows count full loads and log rows applied (tests).
	loads, rows int

	syncs freshRuns[struct{}] // catch-ups, shared by callers woken together
}

type memberInst struct {
	node, ip        string
	member, present bool
	groups          []string // shared with groupLists: never modified
}

type memberGroup struct {
	members map[string]string // instance -> address
	nodes   map[string]int    // node -> its present instances in the group
	// list and version are the members in address order and their
	// nodeapi.MembersVersion, built at the first read after a change.
	list    []string
	version string
	stale   bool
}

// memberRow is one instance's membership as the log or the instances
// table gives it.
type memberRow struct {
	seq                    int64
	instance, node, ip, js string
	member, present        bool
}

// sync makes the copy show every change committed before fresh: it
// returns once a catch-up that started at or after fresh has finished,
// starting one when none did. Callers woken together share one catch-up
// (one read of the log's new rows).
func (l *memberLog) sync(ctx context.Context, c *Cloud, fresh time.Time) error {
	_, err := l.syncs.do(ctx, fresh, func(ctx context.Context) (struct{}, error) {
		return struct{}{}, l.catchUp(ctx, c)
	})
	return err
}

// catchUp applies the log's rows after the last one applied, loading
// every membership first when nothing is loaded or the rows it needs were
// trimmed. Only one runs at a time (sync).
func (l *memberLog) catchUp(ctx context.Context, c *Cloud) error {
	for attempt := 0; ; attempt++ {
		l.mu.Lock()
		loaded, last := l.loaded, l.last
		l.mu.Unlock()
		if !loaded {
			if err := l.load(ctx, c); err != nil {
				return err
			}
			l.mu.Lock()
			last = l.last
			l.mu.Unlock()
		}
		rows, err := readMemberChanges(ctx, c.db, last)
		if err != nil {
			return err
		}
		if len(rows) > 0 && rows[0].seq > last+1 && attempt == 0 {
			// A gap: a rolled-back transaction's seq, or rows trimmed
			// before this controller read them. Only the second can hide
			// a change, and then nothing at or below last is left.
			var low int64
			if err := c.db.QueryRow(ctx, `SELECT COALESCE(MIN(seq), 0) FROM member_changes`).Scan(&low); err != nil {
				return fmt.Errorf("security group member log: %w", err)
			}
			if low > last {
				l.mu.Lock()
				l.loaded = false
				l.mu.Unlock()
				continue
			}
		}
		l.mu.Lock()
		for _, r := range rows {
			if old, ok := l.insts[r.instance]; ok && old.node != "" {
				l.touched[old.node] = r.seq
			}
			if r.node != "" { // not placed yet: no node's answer changed
				l.touched[r.node] = r.seq
			}
			l.applyLocked(r, c.groupLists.of(r.js))
			l.last = r.seq
		}
		l.rows += len(rows)
		l.mu.Unlock()
		return nil
	}
}

// load reads every live instance's membership: the log's newest row
// first, then the instances, so the rows after it that the read already
// saw are applied again, harmlessly.
func (l *memberLog) load(ctx context.Context, c *Cloud) error {
	var top int64
	if err := c.db.QueryRow(ctx, `SELECT COALESCE(MAX(seq), 0) FROM member_changes`).Scan(&top); err != nil {
		return fmt.Errorf("security group member log: %w", err)
	}
	rows, err := c.db.Query(ctx, `SELECT i.id, i.node_id, i.private_ip, i.state, i.desired, r.groups
		FROM instances i JOIN reservations r ON r.id = i.reservation_id WHERE i.state <> 'terminated'`)
	if err != nil {
		return fmt.Errorf("security group members: %w", err)
	}
	defer rows.Close()
	var all []memberRow
	for rows.Next() {
		var r memberRow
		var state, desired string
		if err := rows.Scan(&r.instance, &r.node, &r.ip, &state, &desired, &r.js); err != nil {
			return fmt.Errorf("security group members: %w", err)
		}
		r.member = desired != nodeapi.StateTerminated && r.ip != ""
		r.present = r.node != ""
		all = append(all, r)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("security group members: %w", err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.insts, l.groups = map[string]memberInst{}, map[string]*memberGroup{}
	l.touched, l.base = map[string]int64{}, top
	for _, r := range all {
		l.applyLocked(r, c.groupLists.of(r.js))
	}
	l.loaded, l.last = true, top
	l.loads++
	return nil
}

func readMemberChanges(ctx context.Context, db *store.DB, after int64) ([]memberRow, error) {
	rows, err := db.Query(ctx, `SELECT seq, instance_id, node_id, private_ip, member, present, groups
		FROM member_changes WHERE seq > ? ORDER BY seq`, after)
	if err != nil {
		return nil, fmt.Errorf("security group member log: %w", err)
	}
	defer rows.Close()
	var out []memberRow
	for rows.Next() {
		var r memberRow
		var member, present int
		if err := rows.Scan(&r.seq, &r.instance, &r.node, &r.ip, &member, &present, &r.js); err != nil {
			return nil, fmt.Errorf("security group member log: %w", err)
		}
		r.member, r.present = member == 1, present == 1
		out = append(out, r)
	}
	return out, rows.Err()
}

// applyLocked sets the instance's membership to r's.
func (l *memberLog) applyLocked(r memberRow, groups []string) {
	if old, ok := l.insts[r.instance]; ok {
		for _, g := range old.groups {
			mg := l.groups[g]
			if mg == nil {
				continue
			}
			if old.member {
				delete(mg.members, r.instance)
				mg.stale = true
			}
			if old.present {
				if mg.nodes[old.node]--; mg.nodes[old.node] <= 0 {
					delete(mg.nodes, old.node)
				}
			}
			if len(mg.members) == 0 && len(mg.nodes) == 0 {
				delete(l.groups, g)
			}
		}
		delete(l.insts, r.instance)
	}
	if !r.member && !r.present {
		return
	}
	l.insts[r.instance] = memberInst{node: r.node, ip: r.ip, member: r.member, present: r.present, groups: groups}
	for _, g := range groups {
		mg := l.groups[g]
		if mg == nil {
			mg = &memberGroup{members: map[string]string{}, nodes: map[string]int{}}
			l.groups[g] = mg
		}
		if r.member {
			mg.members[r.instance] = r.ip
			mg.stale = true
		}
		if r.present {
			mg.nodes[r.node]++
		}
	}
}

// members is the group's member addresses in address order and their
// version, as of the last sync. The list is shared: callers must not
// modify it.
func (l *memberLog) members(group string) ([]string, string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	mg := l.groups[group]
	if mg == nil {
		return []string{}, nodeapi.MembersVersion(nil)
	}
	if mg.stale || mg.list == nil {
		as := make([]netip.Addr, 0, len(mg.members))
		for _, ip := range mg.members {
			if a, err := netip.ParseAddr(ip); err == nil {
				as = append(as, a)
			}
		}
		slices.SortFunc(as, func(a, b netip.Addr) int { return a.Compare(b) })
		as = slices.Compact(as)
		list := make([]string, len(as))
		for i, a := range as {
			list[i] = a.String()
		}
		mg.list, mg.version, mg.stale = list, nodeapi.MembersVersion(list), false
	}
	return mg.list, mg.version
}

// nodesOf is the nodes holding an instance (not terminated) of one of the
// groups, as of the last sync, sorted.
func (l *memberLog) nodesOf(groups []string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, g := range groups {
		if mg := l.groups[g]; mg != nil {
			for n := range mg.nodes {
				out = append(out, n)
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// counts is how many full loads and log rows this copy has applied.
func (l *memberLog) counts() (loads, rows int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.loads, l.rows
}

// trimMemberLog deletes the log's rows older than memberLogKeep but the
// newest (which tells a controller behind it that it missed rows).
func trimMemberLog(ctx context.Context, tx *store.Tx, now time.Time) error {
	_, err := tx.Exec(ctx, `DELETE FROM member_changes WHERE at < ? AND seq < (SELECT MAX(seq) FROM member_changes)`,
		now.Add(-memberLogKeep).Unix())
	return err
}

// nodeMark names the changes of the node's instances the log has shown
// (launches onto it, terminations, moves): it grows with each, and with
// every reload. Equal marks: no such change between them.
func (l *memberLog) nodeMark(node string) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return max(l.touched[node], l.base)
}
