package frontend_test

import (
	"errors"
	"strings"
	"testing"

	"ironbark/installer/frontend"
	"ironbark/installer/frontend/frontendtest"
)

const goodFile = `version: 1
cluster:
  name: lab
  fqdn: frontend.lab.example
  contact: ops@lab.example
public:
  interface: eth0
  address: 192.0.2.10
  netmask: 255.255.255.0
  gateway: 192.0.2.1
  dns: [192.0.2.53]
private:
  interface: eth1
  nodes: 20
time:
  zone: Europe/Paris
  ntp: [pool.ntp.org]
admin:
  password: correct horse battery
  sshKey: ` + frontendtest.SSHKey + `
disk:
  device: /dev/vda
rolls: [base, frontend]
`

func TestParseGood(t *testing.T) {
	a, err := frontend.Parse([]byte(goodFile))
	if err != nil {
		t.Fatal(err)
	}
	if a.Cluster.FQDN != "frontend.lab.example" || a.Private.Address != "10.1.1.1" || a.Private.Netmask != "255.255.255.0" ||
		a.Private.Nodes != 20 || a.Time.Zone != "Europe/Paris" || len(a.Rolls) != 2 || a.Public.DNS[0] != "192.0.2.53" {
		t.Fatalf("%+v", a)
	}
	// Marshal then Parse gives the same answers, with the password hashed.
	b, err := frontend.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "correct horse") {
		t.Fatalf("saved answers hold the plain password:\n%s", b)
	}
	a2, err := frontend.Parse(b)
	if err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	if !frontend.CheckPassword(a2.Admin.PasswordHash, "correct horse battery") || frontend.CheckPassword(a2.Admin.PasswordHash, "wrong") {
		t.Fatal("saved hash does not check the password")
	}
	a2.Admin = a.Admin
	if a2.Cluster != a.Cluster || a2.Public.Address != a.Public.Address || a2.Private != a.Private || a2.Disk != a.Disk {
		t.Fatalf("round trip:\n%+v\n%+v", a, a2)
	}
}

// Every problem of a bad file is reported at once, each with its path and
// line.
func TestParseBadListsEverything(t *testing.T) {
	bad := `version: 1
cluster:
  name: Lab Cluster
  fqdn: frontend
  colour: blue
public:
  interface: eth0
  address: 192.0.2.300
  netmask: 255.0.255.0
  dhcp: "yes"
private:
  interface: [eth1]
  nodes: many
time:
  zone: Mars/Olympus
admin:
  password: short
  sshKey: ssh-ed25519 notbase64!
rolls: base
`
	_, err := frontend.Parse([]byte(bad))
	var errs frontend.Errors
	if !errors.As(err, &errs) {
		t.Fatalf("want Errors, got %v", err)
	}
	want := map[string]int{ // path -> line
		"cluster.name": 3, "cluster.fqdn": 4, "cluster.colour": 5, "public.address": 8, "public.netmask": 9,
		"public.dhcp": 10, "private.interface": 12, "private.nodes": 13, "time.zone": 15, "admin.password": 17,
		"admin.sshKey": 18, "rolls": 19, "disk.device": 0,
	}
	got := map[string]int{}
	for _, e := range errs {
		got[e.Path] = e.Line
	}
	for p, line := range want {
		l, ok := got[p]
		if !ok || l != line {
			t.Errorf("%s: want an error at line %d, got %v (ok=%v)", p, line, l, ok)
		}
	}
	if len(errs) != len(want) {
		t.Errorf("want %d errors, got %d:\n%v", len(want), len(errs), err)
	}
	msg := err.Error()
	for _, s := range []string{"line 5: cluster.colour: unknown key", "line 10: public.dhcp: want true or false, got \"yes\"",
		"line 12: private.interface: want a string, got a list", "disk.device: missing", "13 problem(s)"} {
		if !strings.Contains(msg, s) {
			t.Errorf("message lacks %q:\n%s", s, msg)
		}
	}
}

func TestParseShape(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"", "want a mapping"},
		{"- a\n- b\n", "want a mapping"},
		{"version: 1\ncluster: x\n", "cluster: want a mapping"},
		{"version: 2\n", "version: this installer reads version 1"},
		{"version: 1\nversion: 1\n", "given twice"},
		{"version: 1\n  bad: [\n", "not YAML"},
		{"version: 1\nfqdn: x\n", "fqdn: unknown key (did you mean cluster.fqdn?)"},
	} {
		_, err := frontend.Parse([]byte(c.in))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: want %q, got %v", c.in, c.want, err)
		}
	}
}

func TestValidateMachine(t *testing.T) {
	dir := t.TempDir()
	small := frontendtest.BlankDisk(t, dir, 64<<20)
	m := frontendtest.TwoNICs()
	need := frontend.Need{ImageSize: 200 << 20, Rolls: []string{"base", "compute", "frontend"}}

	good := frontendtest.Answers(small)
	good.Disk.Device = small
	if err := frontend.Validate(&good, m, frontend.Need{ImageSize: 1 << 20}); err == nil || !strings.Contains(err.Error(), "disk.device") {
		// 64 MiB holds no 128 MiB data partition.
		t.Fatalf("small disk accepted: %v", err)
	}
	big := frontendtest.BlankDisk(t, t.TempDir(), 1<<30)
	good.Disk.Device = big
	if err := frontend.Validate(&good, m, need); err != nil {
		t.Fatalf("good answers refused: %v", err)
	}

	a := good
	a.Disk.Device = small
	a.Public.Interface = "eth7"
	a.Private.Address, a.Private.Netmask = "192.0.2.200", "255.255.255.0" // overlaps public, and lies in the node range
	a.Private.Nodes = 300
	a.Public.Gateway = "198.51.100.1"
	a.Rolls = []string{"base", "hpc"}
	err := frontend.Validate(&a, m, need)
	if err == nil {
		t.Fatal("bad answers accepted")
	}
	for _, s := range []string{
		`public.interface: no interface "eth7" on this machine (it has: eth0, eth1)`,
		"private.address: the private subnet 192.0.2.0/24 overlaps the public subnet 192.0.2.0/24",
		"private.netmask: 192.0.2.0/24 has room for 127 nodes",
		"private.address: 192.0.2.200 lies in the nodes' address range",
		"public.gateway: 198.51.100.1 is not in the public subnet",
		"disk.device: " + small + " holds 64 MiB; the frontend needs",
		`rolls: no roll "hpc" on this medium`,
	} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("missing %q in:\n%v", s, err)
		}
	}

	b := good
	b.Private.Interface = "eth0"
	b.Disk.Device = "/dev/nonexistent-disk"
	b.Cluster.FQDN = ""
	err = frontend.Validate(&b, m, need)
	if err == nil || !strings.Contains(err.Error(), "cluster.fqdn: missing") {
		t.Fatalf("missing fqdn: %v", err)
	}
	b.Cluster.FQDN = "frontend.lab.example"
	err = frontend.Validate(&b, m, need)
	for _, s := range []string{"private.interface: the private network needs its own interface", "disk.device: no such disk"} {
		if err == nil || !strings.Contains(err.Error(), s) {
			t.Errorf("missing %q in %v", s, err)
		}
	}

	dhcp := good
	dhcp.Public.DHCP, dhcp.Public.Address, dhcp.Public.Netmask, dhcp.Public.Gateway = true, "", "", ""
	if err := frontend.Validate(&dhcp, m, need); err != nil {
		t.Fatalf("DHCP answers refused: %v", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(goodFile))
	f.Add([]byte("version: 1\ncluster: {name: [1]}\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := frontend.Parse(b)
		if err == nil && (a.Cluster.Name == "" || a.Disk.Device == "" || a.Public.Interface == "") {
			t.Fatalf("accepted answers without required keys: %+v", a)
		}
	})
}

func TestWithoutDisk(t *testing.T) {
	m := frontendtest.TwoNICs()
	m.Drive = []frontend.Disk{{Path: "/dev/sda", Size: 8 << 30}, {Path: "/dev/sdb", Size: 4 << 30}, {Path: "/dev/sdbb", Size: 1 << 30}}
	ds, _ := frontend.WithoutDisk(m, "/dev/sdb").Disks()
	if len(ds) != 2 || ds[0].Path != "/dev/sda" || ds[1].Path != "/dev/sdbb" {
		t.Fatalf("%+v", ds)
	}
	ds, _ = frontend.WithoutDisk(m, "/dev/sda1").Disks()
	if len(ds) != 2 || ds[0].Path != "/dev/sdb" {
		t.Fatalf("%+v", ds)
	}
}

func TestWithoutDiskPartitions(t *testing.T) {
	m := frontendtest.TwoNICs()
	m.Drive = []frontend.Disk{{Path: "/dev/sdb"}, {Path: "/dev/nvme0n1"}}
	ds, _ := frontend.WithoutDisk(m, "/dev/sdbb1").Disks()
	if len(ds) != 2 {
		t.Fatalf("%+v", ds)
	}
	ds, _ = frontend.WithoutDisk(m, "/dev/nvme0n1p2").Disks()
	if len(ds) != 1 || ds[0].Path != "/dev/sdb" {
		t.Fatalf("%+v", ds)
	}
}
