package main

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestAddressPoolCommands runs `ironbark address pool add|list|remove`
// against a temp data dir.
func TestAddressPoolCommands(t *testing.T) {
	dir := t.TempDir()
	mustRun(t, "address", "pool", "add", "198.51.100.0/28", "--data-dir", dir)
	if _, errs, code := ironbark(t, "address", "pool", "add", "198.51.100.0/28", "--data-dir", dir); code != 1 || !strings.Contains(errs, "already holds") {
		t.Fatalf("add twice: exit %d %s", code, errs)
	}
	if _, errs, code := ironbark(t, "address", "pool", "add", "198.51.100.0/33", "--data-dir", dir); code != 1 || !strings.Contains(errs, "198.51.100.0/33") {
		t.Fatalf("add a bad block: exit %d %s", code, errs)
	}
	out := mustRun(t, "address", "pool", "list", "--data-dir", dir)
	if !strings.Contains(out, "BLOCK") || !strings.Contains(out, "198.51.100.0/28  14") {
		t.Fatalf("list:\n%s", out)
	}
	var rows []map[string]any
	if err := json.Unmarshal([]byte(mustRun(t, "address", "pool", "list", "--json", "--data-dir", dir)), &rows); err != nil ||
		len(rows) != 1 || rows[0]["block"] != "198.51.100.0/28" || rows[0]["addresses"] != 14.0 || rows[0]["allocated"] != 0.0 {
		t.Fatalf("list --json: %v %v", rows, err)
	}
	mustRun(t, "address", "pool", "remove", "198.51.100.0/28", "--data-dir", dir)
	if _, _, code := ironbark(t, "address", "pool", "remove", "198.51.100.0/28", "--data-dir", dir); code != 1 {
		t.Fatalf("remove twice: exit %d", code)
	}
}
