// Package secgroups enforces EC2 security groups on a node: one nftables
// table, inet ironbark-sg, programmed through netlink (google/nftables).
//
// Instance traffic crosses the node's instance bridge; the kernel's
// br_netfilter hands bridged IPv4 to the inet hooks (the package turns
// net.bridge.bridge-nf-call-iptables on in the node's namespace), so one
// table filters instance to instance, outside to instance (bridged or
// routed through the node, e.g. an elastic IP's DNAT) and instance to
// node, with connection tracking: rules are stateful, as EC2's are.
//
// Layout: base chains at the forward, input and output hooks look the
// instance up by address in two verdict maps (in_ports by destination,
// out_ports by source; the bridge filter in nodeagent pins each port to
// its address, so the source is the instance's) and jump to its chain,
// in_<instance> or out_<instance>: established traffic passes, DHCP and
// the metadata service are always allowed, then a jump to each of its
// groups' chains (gin_<group>, gout_<group>, whose rules accept), then
// drop. A rule naming a peer group matches the set m_<group> of the
// group's members' private addresses.
//
// Build turns what the controller says (nodeapi) into that model, purely;
// Firewall.Apply programs it: the first time (and whenever instances or
// groups come or go) by replacing the whole table, otherwise by rewriting
// only the group chains and member sets that changed. Either is one
// nftables transaction: there is never a moment without rules. Script
// prints the same model in nft's syntax (for `nft -f`, as the benchmark
// does).
package secgroups
