package nodeagent

import (
	"net/netip"
	"testing"

	"ironbark/internal/nodeapi"
)

func TestInstanceNetworks(t *testing.T) {
	specs := []nodeapi.InstanceSpec{
		{InstanceID: "i-1", MAC: "d0:0d:00:00:00:01", PrivateIP: "10.91.0.10", Desired: "running",
			Network: &nodeapi.InstanceNetwork{Mode: nodeapi.ModeManagedNoVLAN, Subnet: "10.91.0.0/24", Gateway: "10.91.0.1", PublicIP: "198.51.100.20"}},
		{InstanceID: "i-2", MAC: "d0:0d:00:00:00:02", PrivateIP: "10.91.0.11", Desired: "running",
			Network: &nodeapi.InstanceNetwork{Mode: nodeapi.ModeManagedNoVLAN, Subnet: "10.91.0.0/24", Gateway: "10.91.0.1"}},
		{InstanceID: "i-3", MAC: "d0:0d:00:00:00:03", PrivateIP: "192.168.5.40", Desired: "running",
			Network: &nodeapi.InstanceNetwork{Mode: nodeapi.ModeSystem, Subnet: "192.168.5.0/24", Gateway: "192.168.5.1"}},
		{InstanceID: "i-4", MAC: "d0:0d:00:00:00:04", PrivateIP: "10.91.0.12", Desired: "terminated",
			Network: &nodeapi.InstanceNetwork{Mode: nodeapi.ModeManagedNoVLAN, Subnet: "10.91.0.0/24", PublicIP: "198.51.100.21"}},
		{InstanceID: "i-5", MAC: "d0:0d:00:00:00:05", PrivateIP: "10.88.0.10", Desired: "running"},
	}
	ms, subnets, onBridge := instanceNetworks(specs)
	if len(ms) != 1 || ms[0].Public.String() != "198.51.100.20" || ms[0].Private.String() != "10.91.0.10" {
		t.Errorf("mappings %v", ms)
	}
	if len(subnets) != 1 || subnets[0].String() != "10.91.0.0/24" {
		t.Errorf("managed subnets %v (a SYSTEM one is the cluster network's)", subnets)
	}
	if len(onBridge) != 1 || onBridge[0] != subnets[0] {
		t.Errorf("gateways on the bridge for %v, want %v", onBridge, subnets)
	}
	// A MANAGED instance with a VLAN: its subnet is NATed, its gateway is
	// on its VLAN's bridge, not the cluster bridge.
	vlan := append(specs, nodeapi.InstanceSpec{InstanceID: "i-6", MAC: "d0:0d:00:00:00:06", PrivateIP: "10.92.1.10", Desired: "running",
		Network: &nodeapi.InstanceNetwork{Mode: nodeapi.ModeManaged, Subnet: "10.92.1.0/24", Gateway: "10.92.1.1", VLAN: 11}})
	if _, subnets, onBridge := instanceNetworks(vlan); len(subnets) != 2 || len(onBridge) != 1 || onBridge[0].String() != "10.91.0.0/24" {
		t.Errorf("with a VLAN instance: NAT subnets %v, bridge gateways %v", subnets, onBridge)
	}
	bridge := netip.MustParsePrefix("10.88.0.1/16")
	for _, tc := range []struct {
		mac   string
		host  string
		serve bool
	}{
		{"D0:0D:00:00:00:01", "10.91.0.1/24", true},
		{"d0:0d:00:00:00:03", "", false},
		{"d0:0d:00:00:00:05", "10.88.0.1/16", true}, // an older controller: the bridge's address
	} {
		host, serve := dhcpHost(tc.mac, specs, bridge)
		if serve != tc.serve || (serve && host.String() != tc.host) {
			t.Errorf("%s: %v %v, want %s %v", tc.mac, host, serve, tc.host, tc.serve)
		}
	}
	// A bridge with its own address in the instance subnet (a Xen dom0
	// bridged onto the cluster network, where the subnet's first address
	// is another machine's) answers from that address.
	own := netip.MustParsePrefix("10.91.0.2/24")
	if host, serve := dhcpHost("d0:0d:00:00:00:01", specs, own); !serve || host != own {
		t.Errorf("bridge in the subnet: %v %v, want %v", host, serve, own)
	}
}
