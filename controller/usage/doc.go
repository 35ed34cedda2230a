// Package usage is the cloud's usage accounting: a durable, append-only
// record of what every instance, public address and image did (Record,
// called by the controller in the transaction that changes the resource's
// state), hourly roll-ups of old events (Rollup) so the record stays
// small, and the reports `ironbark report usage` prints (Compute):
// instance-hours, core-hours, address-hours and image GiB-hours by
// account, user, type, zone or node.
//
// Time accrues from an event that opens a resource's use (an instance
// running as its node reported it, an address held, an image stored) to
// the next event of that resource, or to the end of the report. A node
// that went silent (its heartbeats stopped) records when it was last
// heard and when it came back: the instance time inside such a gap is
// reported apart, as silent hours, never guessed either way.
package usage
