// Package dhcp is ironbark's DHCPv4 server for a cluster's private network:
// it answers PXE firmware, iPXE and installed nodes on exactly one interface,
// keeps its leases in the store, and leaves the policy question "who is this
// client and what should it boot?" to a Backend supplied by package pxe.
//
// The pieces:
//
//   - Backend (backend.go): the consumer-side contract. pxe implements it with
//     its hosts table and insert-ethers style discovery; Assign returns a
//     Binding or ErrIgnore.
//   - LeaseStore (leases.go): the dhcp_leases table (schema in Migrations).
//     Offers of pool addresses are held in memory; an ACK binds the address
//     in one transaction on a table whose primary key is the IP, so no
//     address is bound twice, across crashes or with several servers sharing
//     one PostgreSQL database (the loser of a race gets a NAK and starts
//     over, as DHCP clients do). Static and pinned addresses never expire.
//   - Server (server.go, handler.go): Handle is the protocol logic, a function
//     of the request packet (plus Backend and LeaseStore) to a reply and a
//     Decision, with no sockets, so it is table-tested and fuzzed. Serve runs it
//     on a UDP socket bound to the interface (SO_BINDTODEVICE).
package dhcp
