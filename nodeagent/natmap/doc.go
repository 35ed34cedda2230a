// Package natmap programs a node's elastic IPs: the nftables table
// ironbark-nat (family ip) that DNATs each public address to its
// instance's private one and SNATs the instance's outbound traffic to it,
// and, when the operator enables it, masquerades the other instances'
// outbound traffic through the node's public interface. The public
// addresses themselves go on that interface (/32, labelled ours), with a
// gratuitous ARP so a neighbour learns at once that an address moved here.
//
// Every change rebuilds the whole table in one netlink batch, which the
// kernel applies as one transaction: there is never a moment with half the
// rules, and the same mappings always give the same ruleset (an agent
// restart changes nothing). The rules stay when the agent stops, so
// instances stay reachable while it restarts. It speaks netlink through
// github.com/google/nftables and vishvananda/netlink; no nft binary.
package natmap
