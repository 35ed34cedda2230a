// Package leases is the DHCP server's lease database (dhcp.Leases) kept
// in the store: the dhcp_leases table (schema in Migrations). Offers of
// pool addresses are held in memory; an ACK binds the address in one
// transaction on a table whose primary key is the IP, so no address is
// bound twice, across crashes or with several servers sharing one
// PostgreSQL database (the loser of a race gets a NAK and starts over, as
// DHCP clients do). Static and pinned addresses never expire. ACKs that
// arrive together share one transaction on a connection the store holds
// (store.Conn); each is answered only once committed, in SQLite's WAL
// file (it survives a crash of the process; Config.SyncCommits also
// fsyncs it, for power loss).
package leases
