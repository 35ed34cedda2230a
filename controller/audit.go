package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	"ironbark/controller/ec2"
	"ironbark/internal/store"
)

// The audit log records every call that may change state: each mutating
// EC2 action (decided per action in actionTable) and each administrator
// command that changes state (cmd/ironbark marks them in its command
// table). Reads are never recorded, so they cost nothing more.

// auditing is an action's audit decision, kept with its handler in
// actionTable. The zero value is "nobody decided": such an action is
// audited, and TestEveryActionHasAnAuditDecision fails until it is decided.
type auditing int

const (
	auditUndecided auditing = iota
	readOnly                // changes nothing: not recorded
	audited                 // may change state: every call is recorded
)

// AdminCLI is the account the audit log names for administrator commands
// run on the frontend.
const AdminCLI = "admin (cli)"

// AuditEntry is one recorded call. Its json tags are the JSON lines
// `ironbark audit --json` ships to log systems.
type AuditEntry struct {
	// Seq orders the entries of one store and only grows: a log shipper
	// resumes after the last it sent (AuditQuery.After, `audit --after`).
	Seq       int64     `json:"seq"`
	Time      time.Time `json:"time"`
	Account   string    `json:"account"`    // the account's name, or AdminCLI
	AccountID string    `json:"account_id"` // 12 digits; "" for AdminCLI
	User      string    `json:"user"`       // the account's user; "" for the account itself or the CLI
	AccessKey string    `json:"access_key"`
	Action    string    `json:"action"`    // "RunInstances", "account create"
	Resources []string  `json:"resources"` // what the call named or made
	Source    string    `json:"source"`    // the client's address; "local" for the CLI
	Result    string    `json:"result"`    // "ok" or the EC2 error code (the error for the CLI)
	RequestID string    `json:"request_id,omitempty"`
}

func auditMigration() store.Migration {
	const table = `
	at         BIGINT NOT NULL,
	account    TEXT NOT NULL,
	user_name  TEXT NOT NULL DEFAULT '',
	access_key TEXT NOT NULL DEFAULT '',
	action     TEXT NOT NULL,
	resources  TEXT NOT NULL DEFAULT '[]',
	source     TEXT NOT NULL DEFAULT '',
	result     TEXT NOT NULL,
	request_id TEXT NOT NULL DEFAULT ''
);
CREATE INDEX audit_log_at ON audit_log(at);
CREATE INDEX audit_log_account ON audit_log(account, at);
`
	return store.Migration{ID: "controller/0016-audit-log",
		SQL:      `CREATE TABLE audit_log (seq INTEGER PRIMARY KEY,` + table,
		Postgres: `CREATE TABLE audit_log (seq BIGSERIAL PRIMARY KEY,` + table,
	}
}

// RecordAudit appends e to the audit log. For an EC2 call Account is the
// account id (AccountID is ignored); for the CLI it is AdminCLI.
func RecordAudit(ctx context.Context, db *store.DB, e AuditEntry) error {
	if e.Resources == nil {
		e.Resources = []string{}
	}
	res, err := json.Marshal(e.Resources)
	if err != nil {
		return fmt.Errorf("audit %s: %w", e.Action, err)
	}
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	_, err = db.Exec(ctx, `INSERT INTO audit_log (at, account, user_name, access_key, action, resources, source, result, request_id)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		e.Time.UnixNano(), e.Account, e.User, e.AccessKey, e.Action, string(res), e.Source, e.Result, e.RequestID)
	if err != nil {
		return fmt.Errorf("audit %s: %w", e.Action, err)
	}
	return nil
}

// AuditQuery selects audit entries; zero fields select everything.
type AuditQuery struct {
	Since   time.Time
	After   int64  // only entries with a larger Seq
	Limit   int    // at most this many (0: all)
	Account string // an account's name or id, or AdminCLI
	Action  string
}

// AuditLog returns the entries q selects, oldest first.
func AuditLog(ctx context.Context, db *store.DB, q AuditQuery) ([]AuditEntry, error) {
	where := []string{"l.at >= ?"}
	args := []any{q.Since.UnixNano()}
	if q.Since.IsZero() {
		args[0] = int64(0)
	}
	if q.Account != "" {
		where = append(where, "(l.account = ? OR a.name = ?)")
		args = append(args, q.Account, q.Account)
	}
	if q.Action != "" {
		where = append(where, "l.action = ?")
		args = append(args, q.Action)
	}
	if q.After > 0 {
		where = append(where, "l.seq > ?")
		args = append(args, q.After)
	}
	limit := ""
	if q.Limit > 0 {
		limit = fmt.Sprintf(" LIMIT %d", q.Limit)
	}
	rows, err := db.Query(ctx, `SELECT l.seq, l.at, l.account, COALESCE(a.name, ''), l.user_name, l.access_key, l.action,
		l.resources, l.source, l.result, l.request_id
		FROM audit_log l LEFT JOIN accounts a ON a.id = l.account
		WHERE `+strings.Join(where, " AND ")+` ORDER BY l.seq`+limit, args...)
	if err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	defer rows.Close()
	var out []AuditEntry
	for rows.Next() {
		var e AuditEntry
		var at int64
		var account, name, res string
		if err := rows.Scan(&e.Seq, &at, &account, &name, &e.User, &e.AccessKey, &e.Action, &res, &e.Source, &e.Result, &e.RequestID); err != nil {
			return nil, fmt.Errorf("audit log: %w", err)
		}
		e.Time = time.Unix(0, at).UTC()
		e.Account, e.AccountID = name, account
		if name == "" { // the CLI, or an account since gone
			e.Account, e.AccountID = account, ""
		}
		if err := json.Unmarshal([]byte(res), &e.Resources); err != nil {
			return nil, fmt.Errorf("audit log: resources %q: %w", res, err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	return out, nil
}

// auditResourcer is a response that knows the ids of what it made.
type auditResourcer interface{ auditResources() []string }

func (r *RunInstancesResponse) auditResources() []string {
	ids := []string{r.ReservationID}
	for _, i := range r.Instances {
		ids = append(ids, i.InstanceID)
	}
	return ids
}
func (r *CreateSecurityGroupResponse) auditResources() []string { return []string{r.GroupID} }
func (r *AllocateAddressResponse) auditResources() []string {
	return []string{r.AllocationID, r.PublicIP}
}
func (r *AssociateAddressResponse) auditResources() []string { return []string{r.AssociationID} }
func (r *RegisterImageResponse) auditResources() []string    { return []string{r.ImageID} }
func (r *CreateKeyPairResponse) auditResources() []string    { return []string{r.KeyPairID, r.KeyName} }
func (r *ImportKeyPairResponse) auditResources() []string    { return []string{r.KeyPairID, r.KeyName} }

// auditNames are the request parameters, besides those ending in "Id",
// that name a resource.
var auditNames = map[string]bool{"KeyName": true, "GroupName": true, "PublicIp": true, "UserName": true}

// auditResourceIDs is what a call made (from its answer) and then the ids
// its request named (InstanceId.1, GroupId, KeyName, ...), without repeats.
func auditResourceIDs(r *ec2.Request, resp any, err error) []string {
	var ids []string
	// Only an answer that worked is read: a failed call may come back
	// with a typed nil beside its error.
	if ar, ok := resp.(auditResourcer); ok && err == nil {
		ids = append(ids, ar.auditResources()...)
	}
	for _, k := range slices.Sorted(maps.Keys(r.Params)) {
		parts := strings.Split(k, ".")
		last := parts[len(parts)-1]
		for len(parts) > 1 && isDigits(last) {
			parts = parts[:len(parts)-1]
			last = parts[len(parts)-1]
		}
		if !strings.HasSuffix(last, "Id") && !auditNames[last] {
			continue
		}
		ids = append(ids, r.Params[k]...)
	}
	out := ids[:0]
	seen := map[string]bool{}
	for _, id := range ids {
		if id != "" && !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// audit records one EC2 call that reached its action. A failure to record
// is logged: the call has already happened, so its answer stands.
func (c *Cloud) audit(ctx context.Context, r *ec2.Request, at time.Time, resp any, err error) {
	result := "ok"
	if err != nil {
		result = ec2.AsError(err).Code
	}
	e := AuditEntry{Time: at, Account: r.Principal.AccountID, User: r.Principal.User, AccessKey: r.Principal.AccessKey,
		Action: r.Action, Resources: auditResourceIDs(r, resp, err), Source: r.SourceIP, Result: result, RequestID: r.RequestID}
	if err := RecordAudit(context.WithoutCancel(ctx), c.db, e); err != nil {
		c.log.ErrorContext(ctx, "audit log", "request_id", r.RequestID, "action", r.Action, "error", err)
	}
}

// PruneAudit deletes the audit entries older than before and returns how
// many it deleted. Entries are deleted in batches, so a large prune does
// not hold the store's write lock for long.
func PruneAudit(ctx context.Context, db *store.DB, before time.Time) (int, error) {
	total := 0
	cut := before.UnixNano()
	if before.After(time.Unix(0, math.MaxInt64)) { // past 2262: everything
		cut = math.MaxInt64
	}
	for {
		res, err := db.Exec(ctx, `DELETE FROM audit_log WHERE seq IN (SELECT seq FROM audit_log WHERE at < ? ORDER BY seq LIMIT 10000)`, cut)
		if err != nil {
			return total, fmt.Errorf("prune audit log: %w", err)
		}
		n, _ := res.RowsAffected()
		total += int(n)
		if n < 10000 || ctx.Err() != nil {
			return total, ctx.Err()
		}
	}
}

// RunAuditRetention deletes audit entries older than keep every interval
// until ctx ends (the controller runs it when controller.json sets
// auditRetentionDays).
func (c *Cloud) RunAuditRetention(ctx context.Context, interval, keep time.Duration) {
	c.every(ctx, interval, "audit retention", func(ctx context.Context) error {
		n, err := PruneAudit(ctx, c.db, c.now().Add(-keep))
		if n > 0 {
			c.log.Info("audit entries past their retention deleted", "count", n, "retention", keep.String())
		}
		return err
	})
}
