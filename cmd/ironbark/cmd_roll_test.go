package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"ironbark/roll"
)

// The roll story as a user runs it: a key, a signed roll, added and
// enabled; appliances, profiles and graphs; attributes along the chain;
// discovery only for appliances that exist.
func TestRollCommands(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	rolls := filepath.Join("..", "..", "roll", "testdata", "rolls")
	key := filepath.Join(dir, "roll.key")
	ib := func(args ...string) string { return mustRun(t, append(args, "--data-dir", data)...) }

	// The test rolls stand alone: the built-in ones step aside.
	disableBuiltins(t, data)

	id := strings.TrimSpace(mustRun(t, "roll", "key", "create", key))
	if got := strings.TrimSpace(ib("roll", "key", "trust", key+".pub")); got != id {
		t.Errorf("trusted %q, created %q", got, id)
	}
	mustRun(t, "roll", "create", filepath.Join(rolls, "base"), "--out", filepath.Join(dir, "base.tar"), "--sign", key)
	mustRun(t, "roll", "create", filepath.Join(rolls, "monitor"), "--out", filepath.Join(dir, "monitor.tar"))

	// An unsigned roll is refused, naming the missing signature file, and
	// nothing is added.
	_, errs, code := ironbark(t, "roll", "add", filepath.Join(dir, "monitor.tar"), "--data-dir", data)
	if code != 1 || !strings.Contains(errs, roll.SigFile) || !strings.Contains(errs, "--insecure-trust") {
		t.Errorf("unsigned roll add: exit %d, %s", code, errs)
	}
	if out := ib("roll", "list"); strings.Contains(out, "monitor") {
		t.Errorf("refused roll listed:\n%s", out)
	}

	ib("roll", "add", filepath.Join(dir, "base.tar"), "--enable")
	ib("roll", "add", filepath.Join(dir, "monitor.tar"), "--insecure-trust")
	var all, list []roll.RollInfo
	if err := json.Unmarshal([]byte(ib("roll", "list", "--json")), &all); err != nil {
		t.Fatal(err)
	}
	for _, r := range all {
		if !r.Builtin {
			list = append(list, r)
		}
	}
	if len(list) != 2 || list[0].Name != "base" || !list[0].Enabled || list[0].KeyID != id || list[1].Enabled || list[1].KeyID != "insecure" {
		t.Errorf("roll list: %+v", list)
	}
	if out := ib("appliance", "list"); !strings.Contains(out, "compute") || !strings.Contains(out, "frontend") {
		t.Errorf("appliance list:\n%s", out)
	}

	// Enabling monitor adds its node to compute only.
	before := ib("appliance", "profile", "compute")
	ib("roll", "enable", "monitor")
	after := ib("appliance", "profile", "compute")
	if strings.Contains(before, "prometheus-node-exporter") || !strings.Contains(after, "prometheus-node-exporter") {
		t.Errorf("compute profile before:\n%s\nafter:\n%s", before, after)
	}

	// A host, an attribute on it, and its profile and graph.
	ib("host", "add", "--mac", "52:54:00:00:00:01", "--appliance", "compute")
	ib("attr", "set", "xen", "no", "--host", "compute-0-0")
	ib("attr", "set", "ntp_server", "10.1.1.1")
	ib("attr", "set", "ntp_server", "10.1.1.2", "--rack", "0")
	out := ib("attr", "list", "--host", "compute-0-0")
	for _, want := range []string{"xen", "no", "H", "ntp_server", "10.1.1.2", "R", "hostname", "compute-0-0", "I", "ssh_port", "roll base"} {
		if !strings.Contains(out, want) {
			t.Errorf("attr list --host lacks %q:\n%s", want, out)
		}
	}
	var p roll.Profile
	if err := json.Unmarshal([]byte(ib("appliance", "profile", "compute", "--host", "compute-0-0", "--json")), &p); err != nil {
		t.Fatal(err)
	}
	var nodes []string
	for _, n := range p.Nodes {
		nodes = append(nodes, n.Name)
	}
	if s := strings.Join(nodes, " "); !strings.Contains(s, "kvm") || !strings.Contains(s, "ntp") || strings.Contains(s, "xen") {
		t.Errorf("compute-0-0 profile nodes: %s", s)
	}
	dot := ib("appliance", "graph", "compute", "--pruned", "--host", "compute-0-0")
	full := ib("appliance", "graph", "compute")
	if strings.Contains(dot, `"xen"`) || !strings.Contains(full, `"xen"`) || !strings.HasPrefix(dot, "digraph") {
		t.Errorf("pruned:\n%s\nfull:\n%s", dot, full)
	}
	ib("attr", "remove", "xen", "--host", "compute-0-0")

	// Refusals.
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"discover", "--cluster", "c1", "--appliance", "nope"}, 1, "appliance nope"},
		{[]string{"appliance", "profile", "nope"}, 1, "nope"},
		{[]string{"attr", "set", "hostname", "x", "--host", "compute-0-0"}, 1, "intrinsic"},
		{[]string{"attr", "set", "a", "b", "--host", "compute-0-0", "--rack", "0"}, 2, "at most one"},
		{[]string{"attr", "set", "a", "b", "--host", "compute-9-9"}, 1, "compute-9-9"},
		{[]string{"attr", "set", "ssh_authorized_keys", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f a\nssh-ed25519 AAAA-cut b"}, 1,
			"ssh_authorized_keys: line 2: not an OpenSSH authorized_keys line"},
		{[]string{"roll", "remove", "nope"}, 1, "no such roll"},
		{[]string{"appliance", "add", "login", "--node", "nope"}, 1, "nope"},
	} {
		_, errs, code := ironbark(t, append(c.args, "--data-dir", data)...)
		if code != c.code || !strings.Contains(errs, c.want) {
			t.Errorf("%s: exit %d, %s", strings.Join(c.args, " "), code, errs)
		}
	}
	ib("appliance", "add", "login", "--node", "client", "--summary", "a login node")
	if out := ib("appliance", "profile", "login"); !strings.Contains(out, "openssh-server") {
		t.Errorf("login profile:\n%s", out)
	}
	ib("roll", "disable", "monitor")
	ib("roll", "remove", "monitor")
	// Kept rolls and trusted keys are the frontend's: private like the
	// rest of the data dir.
	assertPrivate(t, data)
}

// disableBuiltins disables every built-in roll, each as soon as the rest
// merge without it.
func disableBuiltins(t *testing.T, data string) {
	t.Helper()
	for {
		var list []roll.RollInfo
		if err := json.Unmarshal([]byte(mustRun(t, "roll", "list", "--json", "--data-dir", data)), &list); err != nil {
			t.Fatal(err)
		}
		left, done := 0, 0
		for _, r := range list {
			if !r.Builtin || !r.Enabled {
				continue
			}
			left++
			if _, _, code := ironbark(t, "roll", "disable", r.Name, "--data-dir", data); code == 0 {
				done++
			}
		}
		if left == 0 {
			return
		}
		if done == 0 {
			t.Fatalf("no built-in roll can be disabled: %+v", list)
		}
	}
}
