package nodeagent

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"ironbark/internal/nodeapi"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func goldenSpec() nodeapi.InstanceSpec {
	return nodeapi.InstanceSpec{InstanceID: "i-0123abcd", AccountID: "000000000001", MAC: "d0:0d:01:23:ab:cd",
		VMType: nodeapi.VMType{Name: "m1.small", Cores: 1, MemoryMiB: 256, DiskGiB: 5}, RebootSerial: 2}
}

func TestDomainXMLGolden(t *testing.T) {
	dir := "/var/lib/ironbark-node/instances/i-0123abcd"
	base := domainPlan{Spec: goldenSpec(), Node: "node-5c1e09aa", Root: dir + "/root.qcow2", Ephemeral: dir + "/ephemeral.qcow2",
		Console: dir + "/console.log", Bridge: "br-zone-a"}
	kernel := "/var/lib/ironbark-node/images/sha256/aaaa"
	initrd := "/var/lib/ironbark-node/images/sha256/bbbb"
	for _, tc := range []struct {
		name           string
		typ            string
		kernel, initrd string
	}{
		{"qemu-direct-kernel", "qemu", kernel, initrd},
		{"qemu-disk-boot", "qemu", "", ""},
		{"kvm-disk-boot", "kvm", "", ""},
		{"xen-pv", "xen", kernel, initrd},
		{"xen-hvm", "xen", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := base
			p.Type, p.Kernel, p.Initrd = tc.typ, tc.kernel, tc.initrd
			if tc.typ == "xen" {
				p.Root, p.Ephemeral, p.Console = dir+"/root.img", dir+"/ephemeral.img", ""
			}
			got, err := p.DomainXML()
			if err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join("testdata", tc.name+".xml")
			if *update {
				if err := os.WriteFile(golden, []byte(got+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update)", err)
			}
			if got+"\n" != string(want) {
				t.Fatalf("domain XML differs from %s (go test -update rewrites it):\n%s", golden, got)
			}
		})
	}
}

func TestTagRoundTrip(t *testing.T) {
	tag := instanceTag{ID: "i-1", Node: "node-1", Account: "a", VMType: "m1.small", RebootSerial: 3}
	for _, s := range []string{tag.tagXML(), tag.plainXML()} {
		got, err := parseTag(s)
		if err != nil || got.ID != "i-1" || got.Node != "node-1" || got.RebootSerial != 3 || got.VMType != "m1.small" {
			t.Fatalf("parse %s: %+v %v", s, got, err)
		}
	}
	if _, err := parseTag(`<instance/>`); err == nil {
		t.Fatal("tag without id accepted")
	}
}

func TestDomainTypes(t *testing.T) {
	for _, tc := range []struct{ uri, flag, want string }{
		{"qemu:///system", "qemu", "qemu"}, {"qemu:///system", "kvm", "kvm"},
		{"xen:///system", "qemu", "xen"}, {"test:///default", "qemu", "test"},
		{"qemu+unix:///system?socket=/x", "qemu", "qemu"}, {"xen+ssh://root@h/system", "qemu", "xen"},
	} {
		if got, err := domainType(tc.uri, tc.flag); err != nil || got != tc.want {
			t.Errorf("domainType(%s, %s) = %s, %v; want %s", tc.uri, tc.flag, got, err, tc.want)
		}
	}
	for _, bad := range [][2]string{{"qemu:///system", "tcg"}, {"lxc:///", "qemu"}, {"qemux:///", "qemu"}} {
		if _, err := domainType(bad[0], bad[1]); err == nil {
			t.Errorf("domainType(%s, %s) accepted", bad[0], bad[1])
		}
	}
	p := domainPlan{Type: "qemu", Spec: nodeapi.InstanceSpec{InstanceID: "i-x"}}
	if _, err := p.DomainXML(); err == nil || !strings.Contains(err.Error(), "positive") {
		t.Fatalf("VM type without cores: %v", err)
	}
}
