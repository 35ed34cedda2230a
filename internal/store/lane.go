package store

import (
	"context"
	"database/sql"
)

// A controller's node API and its EC2 API share one database. At 10,000
// nodes the node API's heartbeats and polls kept every pooled PostgreSQL
// connection busy, and a RunInstances waited in the same queue for each
// of its statements: once while holding the placement lock, with every
// launch queued behind it (paced launches' p99 went past a second in
// bursts). So on PostgreSQL the node API runs on a pool of its own, the
// node lane: a flood of nodes waits for its own connections and leaves the
// EC2 API's (and the background jobs') free. SQLite keeps one pool: its
// reads do not wait on a server, and its writes queue on the write slot.

// laneKey marks a context whose statements run in the node lane.
type laneKey struct{}

// NodeLane marks ctx as the node API's: statements run with it take
// connections from the node lane's pool.
func NodeLane(ctx context.Context) context.Context {
	return context.WithValue(ctx, laneKey{}, true)
}

// InNodeLane says whether ctx was marked by NodeLane.
func InNodeLane(ctx context.Context) bool {
	on, _ := ctx.Value(laneKey{}).(bool)
	return on
}

// nodeLaneConns is the node lane's pool size, beside the main pool's.
// Smaller than the main pool: the node API's statements are many and
// short, and more of them at once than the server has cores only queue
// in its run queue instead of the lane's, taking the CPU a launch's
// statements need. (Measured on 2 cores, 8 and 16 were within the
// noise of each other; see the README's Benchmarks.)
const nodeLaneConns = 8

// pool is the connection pool statements run with ctx take connections
// from.
func (db *DB) pool(ctx context.Context) *sql.DB {
	if db.nodes != nil && InNodeLane(ctx) {
		return db.nodes
	}
	return db.sql
}
