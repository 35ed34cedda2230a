// Package dhcp is ironbark's DHCPv4 server for a cluster's private network:
// it answers PXE firmware, iPXE and installed nodes on exactly one interface,
// asks a Leases database for addresses, and leaves the policy question "who
// is this client and what should it boot?" to a Backend supplied by package
// pxe. It does no storage of its own: pxe/leases keeps the leases.
//
// The pieces:
//
//   - Backend (backend.go): the consumer-side contract. pxe implements it with
//     its hosts table and insert-ethers style discovery; Assign returns a
//     Binding or ErrIgnore.
//   - Leases (lease.go): the consumer-side contract of the lease database,
//     with the Lease, Pool and request types it speaks in.
//   - Server (server.go, handler.go): Handle is the protocol logic, a function
//     of the request packet (plus Backend and Leases) to a reply and a
//     Decision, with no sockets, so it is table-tested and fuzzed. Serve runs it
//     on a UDP socket bound to the interface (SO_BINDTODEVICE); broadcast
//     replies leave as link-layer frames (linkconn.go), as Kea's do.
package dhcp
