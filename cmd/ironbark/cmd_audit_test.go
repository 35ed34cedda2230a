package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"ironbark/controller"
)

// Admin commands that change state leave entries as "admin (cli)", a
// refused one with its error; `ironbark audit` filters them by account,
// action and time, and --json prints one object a line.
func TestAuditCommand(t *testing.T) {
	dir := t.TempDir()
	mustRun(t, "account", "create", "carol", "--data-dir", dir)
	mustRun(t, "quota", "set", "carol", "--instances", "3", "--data-dir", dir)
	if _, _, code := ironbark(t, "account", "disable", "nobody", "--data-dir", dir); code != 1 {
		t.Fatalf("disabling an unknown account exited %d", code)
	}
	// A wrong command line runs nothing and records nothing.
	if _, _, code := ironbark(t, "account", "disable", "--data-dir", dir); code != 2 {
		t.Fatalf("a missing argument exited %d", code)
	}
	mustRun(t, "quota", "list", "--data-dir", dir) // reads are not recorded

	// An EC2 call's entry, as the controller writes it.
	db := dataDirStore(t, dir)
	carol, err := controller.LookupAccount(context.Background(), db, "carol")
	if err != nil {
		t.Fatal(err)
	}
	if err := controller.RecordAudit(context.Background(), db, controller.AuditEntry{Account: carol.ID, AccessKey: carol.AccessKey,
		Action: "RunInstances", Resources: []string{"r-1", "i-1"}, Source: "192.0.2.9", Result: "InstanceLimitExceeded"}); err != nil {
		t.Fatal(err)
	}

	table := mustRun(t, "audit", "--data-dir", dir)
	lines := strings.Split(strings.TrimSpace(table), "\n")
	if len(lines) != 5 || !strings.HasPrefix(lines[0], "TIME") {
		t.Fatalf("audit table:\n%s", table)
	}
	for i, want := range []string{"account create", "quota set", `account "nobody": not found`, "RunInstances"} {
		if !strings.Contains(lines[i+1], want) {
			t.Errorf("line %d %q: want %q", i+1, lines[i+1], want)
		}
	}

	entries := func(args ...string) []controller.AuditEntry {
		t.Helper()
		out := mustRun(t, append([]string{"audit", "--data-dir", dir, "--json"}, args...)...)
		var es []controller.AuditEntry
		sc := bufio.NewScanner(strings.NewReader(out))
		for sc.Scan() {
			var e controller.AuditEntry
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				t.Fatalf("line %q: %v", sc.Text(), err)
			}
			es = append(es, e)
		}
		return es
	}
	if es := entries("--account", "carol"); len(es) != 1 || es[0].Action != "RunInstances" ||
		es[0].AccountID != carol.ID || es[0].Result != "InstanceLimitExceeded" || es[0].Source != "192.0.2.9" {
		t.Errorf("carol's entries: %+v", es)
	}
	if es := entries("--account", controller.AdminCLI, "--action", "account create"); len(es) != 1 ||
		es[0].Account != controller.AdminCLI || len(es[0].Resources) != 1 || es[0].Resources[0] != "carol" || es[0].Result != "ok" {
		t.Errorf("admin account create entries: %+v", es)
	}
	if es := entries("--since", "1h"); len(es) != 4 {
		t.Errorf("entries of the last hour: %d, want 4", len(es))
	}
	if es := entries("--since", time.Now().Add(24*time.Hour).Format("2006-01-02")); len(es) != 0 {
		t.Errorf("entries from tomorrow: %+v", es)
	}
	if _, errs, code := ironbark(t, "audit", "--data-dir", dir, "--since", "yesterday"); code != 2 || !strings.Contains(errs, "--since") {
		t.Errorf("--since yesterday: exit %d\n%s", code, errs)
	}
}

func TestParseSince(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"90m":                  now.Add(-90 * time.Minute),
		"2026-11-29T08:00:00Z": time.Date(2026, 11, 29, 8, 0, 0, 0, time.UTC),
	} {
		got, err := parseSince(in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("parseSince(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "-1h", "tomorrow", "2026-13-01"} {
		if _, err := parseSince(bad, now); err == nil {
			t.Errorf("parseSince(%q) took it", bad)
		}
	}
}

// TestAuditPruneCommand deletes old entries (and records that it did);
// --after resumes a JSON lines shipper.
func TestAuditPruneCommand(t *testing.T) {
	dir := t.TempDir()
	mustRun(t, "account", "create", "carol", "--data-dir", dir)
	mustRun(t, "account", "create", "dave", "--data-dir", dir)
	lines := strings.Split(strings.TrimSpace(mustRun(t, "audit", "--json", "--data-dir", dir)), "\n")
	var first controller.AuditEntry
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil || len(lines) != 2 {
		t.Fatalf("%d lines: %v", len(lines), err)
	}
	rest := strings.TrimSpace(mustRun(t, "audit", "--json", "--after", fmt.Sprint(first.Seq), "--data-dir", dir))
	if strings.Count(rest, "\n") != 0 || !strings.Contains(rest, `"dave"`) {
		t.Fatalf("after %d: %s", first.Seq, rest)
	}
	if _, _, code := ironbark(t, "audit", "prune", "--data-dir", dir); code != 2 {
		t.Fatalf("prune without --before: exit %d", code)
	}
	_, errs, code := ironbark(t, "audit", "prune", "--before", "2999-01-01", "--data-dir", dir)
	if code != 0 || !strings.Contains(errs, "deleted 2 audit entries") {
		t.Fatalf("prune: exit %d: %s", code, errs)
	}
	left := strings.TrimSpace(mustRun(t, "audit", "--json", "--data-dir", dir))
	if strings.Count(left, "\n") != 0 || !strings.Contains(left, `"audit prune"`) {
		t.Fatalf("after the prune: %s", left)
	}
}
