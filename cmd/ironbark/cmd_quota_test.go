package main

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestQuotaSetList sets an account's quotas and reads them back, as a
// table and as JSON; bad input is refused and changes nothing.
func TestQuotaSetList(t *testing.T) {
	dir := t.TempDir()
	mustRun(t, "account", "create", "alice", "--data-dir", dir)
	mustRun(t, "quota", "set", "alice", "--instances", "5", "--cores", "8", "--data-dir", dir)
	mustRun(t, "quota", "set", "alice", "--cores", "unlimited", "--key-pairs", "2", "--data-dir", dir)
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"quota", "set", "alice", "--instances", "-1"}, 2, "want a number"},
		{[]string{"quota", "set", "alice", "--instances", "lots"}, 2, "want a number"},
		{[]string{"quota", "set", "alice"}, 2, "nothing to set"},
		{[]string{"quota", "set", "nobody", "--instances", "1"}, 1, "nobody"},
		{[]string{"quota", "list", "nobody"}, 1, "nobody"},
	} {
		out, errs, code := ironbark(t, append(tc.args, "--data-dir", dir)...)
		if code != tc.code || !strings.Contains(errs, tc.msg) || out != "" {
			t.Errorf("ironbark %s: exit %d, want %d with %q; stdout %q stderr %s", strings.Join(tc.args, " "), code, tc.code, tc.msg, out, errs)
		}
	}
	var rows []struct {
		Account, Resource string
		Limit             *int64
		Used              int64
	}
	if err := json.Unmarshal([]byte(mustRun(t, "quota", "list", "alice", "--json", "--data-dir", dir)), &rows); err != nil {
		t.Fatal(err)
	}
	got := map[string]any{}
	for _, r := range rows {
		if r.Account != "alice" {
			t.Fatalf("row for %s", r.Account)
		}
		got[r.Resource] = "unlimited"
		if r.Limit != nil {
			got[r.Resource] = *r.Limit
		}
	}
	want := map[string]any{"instances": int64(5), "cores": "unlimited", "memory-mib": "unlimited", "addresses": "unlimited",
		"images": "unlimited", "key-pairs": int64(2), "security-groups": "unlimited"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %v, want %v (all: %v)", k, got[k], v, got)
		}
	}
	table := mustRun(t, "quota", "list", "--data-dir", dir)
	if !strings.Contains(table, "alice") || !strings.Contains(table, "instances") || !strings.HasPrefix(table, "ACCOUNT") {
		t.Fatalf("quota list:\n%s", table)
	}
}
