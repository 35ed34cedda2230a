package nodeapi

// Security groups as a node enforces them. The controller sends, with the
// desired instances, every group an instance on the node is in (its
// ingress and egress rules) and every group those rules name as a peer
// (with its members' private addresses, cloud-wide). The node filters each
// instance's traffic by them (nodeagent/secgroups); the ETag of Desired
// covers them, so a rule or membership change wakes the node's long poll.
// A member list the node already holds comes as a change to it (members.go).

// SecurityGroup is one group: its rules, and its members when another
// group's rule on this node names it as the peer.
type SecurityGroup struct {
	ID      string              `json:"id"`
	Ingress []SecurityGroupRule `json:"ingress,omitempty"`
	Egress  []SecurityGroupRule `json:"egress,omitempty"`
	// Members are the private IPv4 addresses of the group's instances
	// that are not terminated, in the whole cloud; sent only for a
	// group some rule names as its peer (nil otherwise).
	Members []string `json:"members,omitempty"`
	// MembersVersion names the member list (MembersVersion of it), set
	// with Members or MembersDelta by a controller that knows versions
	// (members.go); "" from one that does not.
	MembersVersion string `json:"membersVersion,omitempty"`
	// MembersDelta, when set, stands for Members: the list is the one the
	// node holds at the delta's base, changed by it.
	MembersDelta *MembersDelta `json:"membersDelta,omitempty"`
}

// SecurityGroupRule is one permission: traffic of Protocol (and ports)
// from (ingress) or to (egress) a CIDR or the members of a group.
type SecurityGroupRule struct {
	// Protocol is tcp, udp, icmp, another IP protocol number, or -1 for
	// every protocol.
	Protocol string `json:"protocol"`
	// From and To are the port range for tcp and udp; for icmp, From is
	// the type and To the code (-1: any). -1 when Protocol is -1.
	From int `json:"from"`
	To   int `json:"to"`
	// Exactly one of CIDR (IPv4) and Group (the peer group's ID) is set.
	CIDR  string `json:"cidr,omitempty"`
	Group string `json:"group,omitempty"`
}
