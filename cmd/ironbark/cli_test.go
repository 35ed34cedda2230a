package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"ironbark/internal/nodeapi"
	"ironbark/internal/store"
)

// ironbark runs the command line as the binary would, in-process, and
// returns what it printed on stdout and stderr and its exit status.
func ironbark(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	err := run(context.Background(), args, &out, &errb)
	code = exitCode(err, &errb)
	return out.String(), errb.String(), code
}

// mustRun runs the command line, fails the test unless it exits 0, and
// returns its stdout.
func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	out, errs, code := ironbark(t, args...)
	if code != 0 {
		t.Fatalf("ironbark %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errs)
	}
	return out
}

// dataDirStore opens the data dir's store as the commands do (the URL
// the controller remembered or SQLite, the data dir's secret key), for a
// test to look behind them; it is closed when the test ends.
func dataDirStore(t testing.TB, dir string) *store.DB {
	t.Helper()
	e := &env{dataDir: dir}
	db, err := e.openStore(context.Background(), nil)
	t.Cleanup(func() { e.close() })
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func TestExitCodes(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		args   []string
		code   int
		stderr string // a part of it
	}{
		{[]string{}, 2, "commands:"},
		{[]string{"help"}, 0, "host set-boot"},
		{[]string{"-h"}, 0, "cluster add"},
		{[]string{"--help"}, 0, "image import"},
		{[]string{"help", "host", "add"}, 0, "-mac"},
		{[]string{"host", "add", "-h"}, 0, "usage: ironbark host add [flags] [NAME]"},
		{[]string{"pxe", "--help"}, 0, "see also: ironbark pxe setup, ironbark pxe image"},
		{[]string{"host", "-h"}, 0, "host remove"},
		{[]string{"host"}, 2, "host set-boot"},
		{[]string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{[]string{"cluster", "add", "--data-dir", dir}, 2, "wrong number of arguments"},
		{[]string{"cluster", "add", "a", "b", "--data-dir", dir}, 2, "usage: ironbark cluster add [flags] NAME"},
		{[]string{"cluster", "list", "--no-such-flag", "--data-dir", dir}, 2, "flag provided but not defined"},
		{[]string{"host", "add", "--data-dir", dir}, 2, "--mac is required"},
		{[]string{"host", "set-boot", "compute-0-0", "sideways", "--data-dir", dir}, 2, "sideways"},
		{[]string{"node", "token", "--data-dir", dir}, 2, "--cluster is required"},
		{[]string{"image", "build"}, 2, "--from and --out are required"},
		{[]string{"node", "token", "--cluster", "nope", "--data-dir", dir}, 1, "nope"},
		{[]string{"host", "remove", "compute-9-9", "--data-dir", dir}, 1, "compute-9-9"},
		{[]string{"cluster", "list", "--data-dir", dir}, 0, ""},
	} {
		out, errs, code := ironbark(t, tc.args...)
		if code != tc.code || !strings.Contains(errs, tc.stderr) {
			t.Errorf("ironbark %s: exit %d, want %d; stderr should have %q:\n%s", strings.Join(tc.args, " "), code, tc.code, tc.stderr, errs)
		}
		if code != 0 && out != "" {
			t.Errorf("ironbark %s: failed but printed data %q", strings.Join(tc.args, " "), out)
		}
	}
}

// TestEveryCommandHasHelp runs -h on each command of the table.
func TestEveryCommandHasHelp(t *testing.T) {
	for _, c := range commands() {
		args := append(strings.Fields(c.name), "-h")
		out, errs, code := ironbark(t, args...)
		if code != 0 || out != "" || !strings.Contains(errs, "usage: ironbark "+c.name) || !strings.Contains(errs, c.summary()) {
			t.Errorf("%s -h: exit %d, stdout %q, stderr:\n%s", c.name, code, out, errs)
		}
		if !c.noStore && !strings.Contains(errs, "-data-dir") {
			t.Errorf("%s has no --data-dir", c.name)
		}
	}
}

// TestListsPrintJSON checks every list and show command takes --json on
// a fresh data dir: a list prints a JSON array with one element per row
// of its table, a show one JSON value.
func TestListsPrintJSON(t *testing.T) {
	dir := t.TempDir()
	n := 0
	for _, c := range commands() {
		if min, _ := c.arity(); !c.showsData() || min > 0 {
			continue
		}
		n++
		args := append(strings.Fields(c.name), "--data-dir", dir)
		out := mustRun(t, append(args, "--json")...)
		var v any
		if err := json.Unmarshal([]byte(out), &v); err != nil {
			t.Errorf("%s --json: %v\n%s", c.name, err, out)
			continue
		}
		rows, isList := v.([]any)
		if !isList {
			continue
		}
		if table := mustRun(t, args...); strings.Count(table, "\n") != len(rows)+1 {
			t.Errorf("%s: %d JSON rows, but the table is:\n%s", c.name, len(rows), table)
		}
	}
	if n < 4 {
		t.Fatalf("only %d list commands in the table", n)
	}
}

// TestClusterNodeHostStory is an operator's first steps on a fresh data
// dir: a cluster, a token, a host by hand, its boot action, its removal.
func TestClusterNodeHostStory(t *testing.T) {
	dir := t.TempDir()
	ib := func(args ...string) string { return mustRun(t, append(args, "--data-dir", dir)...) }

	if out := ib("cluster", "add", "zone-a", "--policy", "powersave"); out != "" {
		t.Errorf("cluster add printed data %q", out)
	}
	if out := ib("cluster", "list"); !strings.Contains(out, "zone-a") || !strings.Contains(out, "POWERSAVE") {
		t.Fatalf("cluster list: %q", out)
	}
	var clusters []clusterRow
	if err := json.Unmarshal([]byte(ib("cluster", "list", "--json")), &clusters); err != nil ||
		len(clusters) != 1 || clusters[0].Name != "zone-a" || clusters[0].Policy != "POWERSAVE" {
		t.Fatalf("cluster list --json: %v %+v", err, clusters)
	}
	ib("cluster", "set-policy", "zone-a", "roundrobin")
	if out := ib("cluster", "list"); !strings.Contains(out, "ROUNDROBIN") {
		t.Fatalf("after set-policy: %q", out)
	}
	if _, errs, code := ironbark(t, "cluster", "add", "zone-a", "--data-dir", dir); code != 1 {
		t.Fatalf("cluster added twice: exit %d\n%s", code, errs)
	}

	// The token is the only thing on stdout, so TOKEN=$(ironbark node token ...) works.
	tok := ib("node", "token", "--cluster", "zone-a")
	if _, _, err := nodeapi.ParseToken(strings.TrimSpace(tok)); err != nil {
		t.Fatalf("node token printed %q: %v", tok, err)
	}
	if out := ib("node", "list", "--json"); strings.TrimSpace(out) != "[]" {
		t.Fatalf("node list --json: %q", out)
	}

	ib("host", "add", "--mac", "52:54:00:AA:00:01", "--cluster", "zone-a", "--rack", "1")
	ib("host", "add", "--mac", "52:54:00:aa:00:02", "--appliance", "login", "--ip", "10.1.0.5", "head")
	var hosts []hostRow
	if err := json.Unmarshal([]byte(ib("host", "list", "--json")), &hosts); err != nil || len(hosts) != 2 {
		t.Fatalf("host list --json: %v %+v", err, hosts)
	}
	want := hostRow{Name: "compute-1-0", MAC: "52:54:00:aa:00:01", Appliance: "compute", Rack: 1, Cluster: "zone-a", Boot: "install"}
	got := hosts[0]
	got.Install = ""
	if hosts[1].Name == want.Name {
		got = hosts[1]
	}
	got.Install = ""
	if got != want {
		t.Errorf("host list --json: got %+v, want %+v", got, want)
	}
	ib("host", "set-boot", "compute-1-0", "os")
	if out := ib("host", "list"); !strings.Contains(out, "compute-1-0") || !strings.Contains(out, " os ") || !strings.Contains(out, "10.1.0.5") {
		t.Errorf("host list:\n%s", out)
	}
	ib("host", "remove", "head")
	if out := ib("host", "list"); strings.Contains(out, "head") {
		t.Errorf("head still listed:\n%s", out)
	}
}

// TestREADMECommandLines parses every ironbark command line README.md
// shows, as the binary would before running it: the command exists, its
// flags are known and its arguments are as many as it takes.
func TestREADMECommandLines(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	code := false
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "```") {
			code = !code
			continue
		}
		if !code {
			continue
		}
		// "$ " marks a command; a bare line may be one (a block of
		// commands) or a program's output that starts with the word.
		line, prompted := strings.CutPrefix(line, "$ ")
		rest, ok := strings.CutPrefix(line, "ironbark ")
		if !ok {
			rest, ok = strings.CutPrefix(line, "bin/ironbark ")
		}
		if !ok {
			continue
		}
		rest, _, _ = strings.Cut(rest, " #")                     // a comment
		rest, _, _ = strings.Cut(rest, " > ")                    // a redirection
		rest, _, _ = strings.Cut(rest, " 2>")                    // of stderr
		rest, _, _ = strings.Cut(rest, " | ")                    // a pipe
		rest = strings.TrimSuffix(strings.TrimSpace(rest), " &") // run in the background
		args := shellFields(rest)
		c, after := lookup(commands(), args)
		if c == nil && !prompted {
			continue
		}
		if c == nil {
			t.Errorf("README: %q: no such command", line)
			continue
		}
		if _, err := c.parse(&env{cmd: c}, after); err != nil {
			t.Errorf("README: %q: %v", line, err)
		}
		n++
	}
	if n < 20 {
		t.Fatalf("only %d command lines found in README.md", n)
	}
}

// shellFields splits a command line into words as sh would for quoting:
// a '...' or "..." string (a "$(...)" in it too) is part of one word.
func shellFields(s string) []string {
	var out []string
	var w strings.Builder
	in, quote := false, byte(0)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0 && c == quote:
			quote = 0
		case quote != 0:
			w.WriteByte(c)
		case c == '\'' || c == '"':
			quote, in = c, true
		case c == ' ' || c == '\t':
			if in {
				out = append(out, w.String())
				w.Reset()
				in = false
			}
		default:
			w.WriteByte(c)
			in = true
		}
	}
	if in {
		out = append(out, w.String())
	}
	return out
}
