package nodeapi

// Networking modes of a cluster, Eucalyptus' names.
const (
	// ModeSystem bridges instances onto the cluster's own network: their
	// addresses come from a DHCP server already there, and the agent
	// serves no DHCP of its own.
	ModeSystem = "SYSTEM"
	// ModeManagedNoVLAN: ironbark owns the cluster's instance subnet (the
	// agent's DHCP and metadata on the instance bridge, whose address is
	// the subnet's gateway), elastic IPs by NAT on the node. The default.
	ModeManagedNoVLAN = "MANAGED-NOVLAN"
	// ModeManaged is MANAGED-NOVLAN plus a VLAN per security group on the
	// node's private interface, for switches that carry tagged frames.
	ModeManaged = "MANAGED"
)

// Modes lists the networking modes, the default first.
func Modes() []string { return []string{ModeManagedNoVLAN, ModeManaged, ModeSystem} }

// InstanceNetwork is how the controller wants one instance's network on
// its node: the cluster's mode and subnet, and the public address NATed to
// the instance's private one. It rides in InstanceSpec.Network; nil (an
// older controller) means MANAGED-NOVLAN on whatever the bridge carries,
// with no public address.
type InstanceNetwork struct {
	Mode string `json:"mode"`
	// Subnet is the cluster's instance subnet (CIDR); Gateway its first
	// address, the instance bridge's in the MANAGED modes.
	Subnet  string `json:"subnet,omitempty"`
	Gateway string `json:"gateway,omitempty"`
	// PublicIP is the elastic or launch-time public address: the node
	// DNATs it to PrivateIP and SNATs the instance's outbound traffic to it.
	PublicIP string `json:"publicIp,omitempty"`
	// VLAN is the instance's VLAN tag in MANAGED mode (0: untagged).
	VLAN int `json:"vlan,omitempty"`
}
