package main

import (
	"encoding/json"
	"strings"
	"testing"

	"ironbark/controller"
)

// TestClusterNetworkCommands: clusters get their own instance subnets (the
// default for the first, the next free block for the others,
// controller.json's clusterSubnets, --instance-subnet), overlapping or bad
// ones are refused and leave nothing, and modes and public IPs show in
// cluster list.
func TestClusterNetworkCommands(t *testing.T) {
	dir := t.TempDir()
	ib := func(args ...string) string { return mustRun(t, append(args, "--data-dir", dir)...) }
	list := func() map[string]clusterRow {
		t.Helper()
		var rows []clusterRow
		if err := json.Unmarshal([]byte(ib("cluster", "list", "--json")), &rows); err != nil {
			t.Fatal(err)
		}
		out := map[string]clusterRow{}
		for _, r := range rows {
			out[r.Name] = r
		}
		return out
	}
	if err := controller.SaveSettings(dir, controller.Settings{ClusterSubnets: map[string]string{"cluster3": "10.95.0.0/24"}}); err != nil {
		t.Fatal(err)
	}
	ib("cluster", "add", "cluster0")
	ib("cluster", "add", "cluster1", "--public-ips", "on")
	for _, bad := range []struct {
		args []string
		code int
		says string
	}{
		{[]string{"cluster", "add", "cluster2", "--instance-subnet", "10.89.128.0/24"}, 1, "instance subnets overlap: cluster cluster1 (10.89.0.0/16) and cluster cluster2 (10.89.128.0/24)"},
		{[]string{"cluster", "add", "cluster2", "--instance-subnet", "10.95.0.0/25"}, 1, "cluster cluster3 (10.95.0.0/24)"},
		{[]string{"cluster", "add", "cluster2", "--network-mode", "bogus"}, 2, "want one of MANAGED-NOVLAN, MANAGED, SYSTEM"},
		{[]string{"cluster", "set", "cluster1", "--instance-subnet", "10.90.0.1/24"}, 1, "the network address is 10.90.0.0/24"},
		{[]string{"cluster", "set", "cluster1", "--public-ips", "maybe"}, 2, "want on or off"},
		{[]string{"cluster", "set", "cluster1"}, 2, "give --network-mode, --instance-subnet, --public-ips, --vlans or --addrs-per-net"},
		{[]string{"cluster", "set", "cluster1", "--vlans", "10-5000"}, 2, "want a range inside 1-4094"},
		{[]string{"cluster", "set", "cluster1", "--vlans", "ten"}, 2, "want LOW-HIGH"},
		{[]string{"cluster", "set", "cluster1", "--addrs-per-net", "100"}, 2, "want a power of two"},
		{[]string{"cluster", "set", "cluster1", "--network-mode", "managed", "--addrs-per-net", "131072"}, 1, "more than the instance subnet 10.89.0.0/16 holds"},
		{[]string{"cluster", "set", "nowhere", "--public-ips", "on"}, 1, "no such cluster"},
	} {
		_, errs, code := ironbark(t, append(bad.args, "--data-dir", dir)...)
		if code != bad.code || !strings.Contains(errs, bad.says) {
			t.Errorf("%v: exit %d, %q; want exit %d saying %q", bad.args, code, errs, bad.code, bad.says)
		}
	}
	ib("cluster", "add", "cluster3")
	ib("cluster", "set", "cluster0", "--network-mode", "system")
	got := list()
	for name, want := range map[string]clusterRow{
		"cluster0": {Network: "SYSTEM", Subnet: "10.88.0.0/16"},
		"cluster1": {Network: "MANAGED-NOVLAN", Subnet: "10.89.0.0/16", Public: true},
		"cluster3": {Network: "MANAGED-NOVLAN", Subnet: "10.95.0.0/24"},
	} {
		g := got[name]
		if g.Network != want.Network || g.Subnet != want.Subnet || g.Public != want.Public {
			t.Errorf("%s: %+v, want %+v", name, g, want)
		}
	}
	if len(got) != 3 {
		t.Errorf("clusters %v: a refused add left one behind", got)
	}
	if _, says, code := ironbark(t, "cluster", "set", "cluster3", "--network-mode", "managed", "--vlans", "100-199", "--data-dir", dir); code != 0 ||
		!strings.Contains(says, "network MANAGED (VLANs 100-199, addresses per group auto)") {
		t.Errorf("cluster set MANAGED: exit %d, %q", code, says)
	}
	if g := list()["cluster3"]; g.Network != "MANAGED" || g.VLANs == nil || *g.VLANs != [2]int{100, 199} || g.AddrsPerNet != 16 {
		t.Errorf("cluster3 (MANAGED in a /24): %+v", g)
	}
	if out := ib("cluster", "list"); !strings.Contains(out, "MANAGED vlans 100-199 x16") {
		t.Errorf("cluster list:\n%s", out)
	}
}
