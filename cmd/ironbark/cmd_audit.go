package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	"ironbark/controller"
)

// The audit log (controller/audit.go keeps it): `ironbark audit` reads
// it, and recordAdmin writes an entry for each run of a command the
// table marks audit.

func auditShow(fs *flag.FlagSet) runFunc {
	since := fs.String("since", "", "only entries from then on: a duration back from now (24h, 90m) or a time (2006-01-02 or RFC 3339)")
	account := fs.String("account", "", "only this account's entries (a name or id; \""+controller.AdminCLI+"\" for admin commands)")
	action := fs.String("action", "", "only this action (RunInstances, \"account create\", ...)")
	asJSON := fs.Bool("json", false, "print one JSON object a line, for shipping to a log system")
	after := fs.Int64("after", 0, "only entries after this seq (a shipper resumes after the last seq it sent)")
	limit := fs.Int("limit", 0, "at most this many entries, oldest first (0: all)")
	return func(ctx context.Context, e *env) error {
		if *after < 0 || *limit < 0 {
			return e.usagef("--after and --limit take a number of 0 or more")
		}
		q := controller.AuditQuery{Account: *account, Action: *action, After: *after, Limit: *limit}
		if *since != "" {
			t, err := parseSince(*since, time.Now())
			if err != nil {
				return e.usagef("--since: %v", err)
			}
			q.Since = t
		}
		db, err := e.openStore(ctx, controller.Migrations())
		if err != nil {
			return err
		}
		entries, err := controller.AuditLog(ctx, db, q)
		if err != nil {
			return err
		}
		if *asJSON {
			enc := json.NewEncoder(e.stdout)
			for _, en := range entries {
				if err := enc.Encode(en); err != nil {
					return err
				}
			}
			return nil
		}
		rows := make([]auditRow, len(entries))
		for i, en := range entries {
			rows[i] = auditRow(en)
		}
		return printList(e, []string{"TIME", "ACCOUNT", "KEY", "ACTION", "RESOURCES", "SOURCE", "RESULT"}, rows)
	}
}

// auditRow is one entry's table line.
type auditRow controller.AuditEntry

func (r auditRow) cells() []string {
	key := r.AccessKey
	if key == "" {
		key = "-"
	}
	res := strings.Join(r.Resources, ",")
	if res == "" {
		res = "-"
	}
	who := r.Account
	if r.User != "" {
		who += "/" + r.User // the account's user who signed
	}
	return []string{r.Time.UTC().Format(time.RFC3339), who, key, r.Action, res, r.Source, r.Result}
}

// parseSince reads --since: a duration back from now, or a time.
func parseSince(s string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return time.Time{}, fmt.Errorf("%q: want a positive duration", s)
		}
		return now.Add(-d), nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04", "2006-01-02 15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, time.Local); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is neither a duration (24h) nor a time (2006-01-02, RFC 3339)", s)
}

// recordAdmin writes the audit entry of an admin command that ran with
// result cmdErr, and returns the error the command ends with. A command
// line that never ran (a usage error) is not recorded. When the entry
// cannot be written, a command that worked fails: a change nobody can
// trace is what the log exists to prevent.
func recordAdmin(ctx context.Context, e *env, cmdErr error) error {
	if errors.As(cmdErr, new(usageError)) {
		return cmdErr
	}
	result := "ok"
	if cmdErr != nil {
		result = cmdErr.Error()
		if len(result) > 500 {
			result = result[:500]
		}
	}
	db, err := e.openStore(ctx, controller.Migrations())
	if err == nil {
		err = controller.RecordAudit(ctx, db, controller.AuditEntry{Account: controller.AdminCLI,
			Action: e.cmd.name, Resources: e.args, Source: "local", Result: result})
	}
	if err != nil {
		if cmdErr != nil {
			e.say("ironbark: audit log: %v", err)
			return cmdErr
		}
		return fmt.Errorf("%s worked, but its audit log entry was not written: %w", e.cmd.name, err)
	}
	return cmdErr
}

func auditPrune(fs *flag.FlagSet) runFunc {
	before := fs.String("before", "", "delete the entries older than this: a duration back from now (2160h) or a time (2006-01-02 or RFC 3339)")
	return func(ctx context.Context, e *env) error {
		if *before == "" {
			return e.usagef("--before is required (a duration back from now, or a time)")
		}
		t, err := parseSince(*before, time.Now())
		if err != nil {
			return e.usagef("--before: %v", err)
		}
		db, err := e.openStore(ctx, controller.Migrations())
		if err != nil {
			return err
		}
		n, err := controller.PruneAudit(ctx, db, t)
		if err != nil {
			return err
		}
		e.say("deleted %d audit entries older than %s", n, t.UTC().Format(time.RFC3339))
		return nil
	}
}
