package builtin_test

import (
	"slices"
	"strings"
	"testing"

	"ironbark/roll"
	"ironbark/roll/builtin"
)

// TestProfiles walks each built-in appliance with the roll package's
// loader and graph: the compute appliance is a Xen dom0 with the agent on
// xen:///system, compute-kvm the same on qemu:///system, the frontend
// runs the controller.
func TestXenDom0Memory(t *testing.T) {
	rs, err := roll.LoadEach(builtin.FS(), "builtin")
	if err != nil {
		t.Fatal(err)
	}
	g, err := roll.Merge(rs...)
	if err != nil {
		t.Fatal(err)
	}
	for attrs, want := range map[string]string{"": "dom0_mem=1024M,max:1024M", "2048M": "dom0_mem=2048M,max:2048M"} {
		a := map[string]string{}
		if attrs != "" {
			a["xen_dom0_mem"] = attrs
		}
		p, err := g.Profile("compute", a)
		if err != nil {
			t.Fatal(err)
		}
		var cfg string
		for _, f := range p.Files {
			if f.Path == "/etc/default/grub.d/xen.cfg" {
				cfg = string(f.Content)
			}
		}
		if !strings.Contains(cfg, want) {
			t.Errorf("xen_dom0_mem=%q: the Xen boot entry lacks %s:\n%s", attrs, want, cfg)
		}
	}
}

func TestProfiles(t *testing.T) {
	rs, err := roll.LoadEach(builtin.FS(), "builtin")
	if err != nil {
		t.Fatal(err)
	}
	g, err := roll.Merge(rs...)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		appliance       string
		nodes, notNodes []string
		packages        []string
		agentURI        string
		after           string // the agent unit's ordering: libvirtd (and Xen's toolstack), the ESP
	}{
		{"compute", []string{"base", "ssh", "ntp", "node-identity", "xen", "xen-boot", "node-bridge", "ironbark-node"}, []string{"kvm", "controller"},
			[]string{"xen-hypervisor-4.17-amd64", "xen-utils-4.17", "libvirt-daemon-system", "libvirt-daemon-driver-xen", "linux-image-amd64"},
			"--libvirt xen:///system", "After=network-online.target libvirtd.service xen.service boot-efi.mount"},
		{"compute-kvm", []string{"base", "kvm", "node-bridge", "ironbark-node"}, []string{"xen", "xen-boot", "controller"},
			[]string{"qemu-system-x86", "libvirt-daemon-system", "libvirt-daemon-driver-qemu"},
			"--libvirt qemu:///system --domain-type kvm", "After=network-online.target libvirtd.service boot-efi.mount"},
		{"frontend", []string{"base", "controller", "pxe-server", "image-store"}, []string{"xen", "kvm", "ironbark-node"},
			[]string{"ipxe", "mmdebstrap"}, "", ""},
	} {
		p, err := g.Profile(tc.appliance, map[string]string{"hostname": tc.appliance + "-0-0"})
		if err != nil {
			t.Fatalf("%s: %v", tc.appliance, err)
		}
		var nodes, pkgs []string
		for _, n := range p.Nodes {
			nodes = append(nodes, n.Name)
		}
		for _, pk := range p.Packages {
			pkgs = append(pkgs, pk.Name)
		}
		for _, n := range tc.nodes {
			if !slices.Contains(nodes, n) {
				t.Errorf("%s: node %s missing from %v", tc.appliance, n, nodes)
			}
		}
		for _, n := range tc.notNodes {
			if slices.Contains(nodes, n) {
				t.Errorf("%s: node %s in %v", tc.appliance, n, nodes)
			}
		}
		for _, pk := range tc.packages {
			if !slices.Contains(pkgs, pk) {
				t.Errorf("%s: package %s missing from %v", tc.appliance, pk, pkgs)
			}
		}
		if tc.agentURI == "" {
			continue
		}
		var unit string
		for _, f := range p.Files {
			if f.Path == "/etc/systemd/system/ironbark-node.service" {
				unit = string(f.Content)
			}
		}
		if !strings.Contains(unit, tc.agentURI) || !strings.Contains(unit, tc.after+"\n") || strings.Contains(unit, "Requires=") {
			t.Errorf("%s: the agent's unit does not run %q with %q (and no Requires=):\n%s", tc.appliance, tc.agentURI, tc.after, unit)
		}
	}
}
