package cluster

import (
	"context"
	"fmt"
	"strings"
	"time"

	"ironbark/internal/gather"
	"ironbark/internal/store"
)

// Most heartbeats change nothing but the node's last-heard time. Written
// one by one, 10,000 nodes make 1,000 write transactions a second, and on
// SQLite, where one transaction writes at a time, they queue behind each
// other and behind every launch. beatWriter writes them in groups: the
// first heartbeat to arrive opens a group, waits beatWindow for others to
// join it, and writes them all in one transaction; each caller answers its
// node once the group is committed, so a heartbeat answered is a heartbeat
// recorded, as before.
//
// One group writes at a time: a group stays open to newcomers until the
// group before it is written, so when the store is slow (a starved
// machine, a long launch holding SQLite's write lock) the heartbeats
// arriving meanwhile wait as one group, not as one writer each in the
// store's queue, where they had run out its write wait and failed.
type beatWriter struct {
	gather *gather.Gatherer[beat, bool]
}

func newBeatWriter(db *store.DB) *beatWriter {
	return &beatWriter{gather: gather.New(func(ctx context.Context, beats []beat) ([]bool, error) {
		return writeGroup(ctx, db, beats)
	}, beatWindow, time.Minute)}
}

// beatWindow is how long a group collects heartbeats before it is written.
const beatWindow = 10 * time.Millisecond

type beat struct {
	node, serial string
	at           int64
}

// record writes the node's last heartbeat time with the group it joins. It
// reports false when the node or its certificate serial is unknown
// (removed or re-enrolled), or the node is no longer up.
func (w *beatWriter) record(ctx context.Context, node, serial string, at int64) (bool, error) {
	return w.gather.Do(ctx, beat{node, serial, at})
}

// beatsPerStatement bounds the heartbeats one UPDATE writes (three
// parameters each: far below either engine's limit). A variable so a
// test can make groups span several statements.
var beatsPerStatement = 1000

// writeGroup writes a group's heartbeats in one transaction and says, per
// beat, whether its node's row was updated: one node may be in a group
// twice (a re-enrolled node's old agent beating).
func writeGroup(ctx context.Context, db *store.DB, beats []beat) ([]bool, error) {
	ok := make([]bool, len(beats))
	err := db.InTx(ctx, func(tx *store.Tx) error {
		clear(ok)
		for from := 0; from < len(beats); from += beatsPerStatement {
			if err := writeBeats(ctx, tx, beats[from:min(from+beatsPerStatement, len(beats))], ok[from:]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("record %d heartbeats: %w", len(beats), err)
	}
	return ok, nil
}

// writeBeats writes beats in one statement, a round trip for the lot
// (one UPDATE per heartbeat held the group's connection for hundreds of
// round trips at 10,000 nodes), and sets ok[i] when beat i's node row was
// updated. Only a node still up, with the serial its heartbeat was
// authenticated with: one marked down since it was read comes back
// through the whole update, which records the silence's end.
func writeBeats(ctx context.Context, tx *store.Tx, beats []beat, ok []bool) error {
	var q strings.Builder
	args := make([]any, 0, 3*len(beats)+1)
	// The CAST types the time column for PostgreSQL, which reads
	// VALUES' parameters as text.
	q.WriteString(`WITH beat (id, serial, at) AS (VALUES `)
	for i, b := range beats {
		if i > 0 {
			q.WriteString(`, `)
		}
		q.WriteString(`(?, ?, CAST(? AS BIGINT))`)
		args = append(args, b.node, b.serial, b.at)
	}
	q.WriteString(`) UPDATE nodes SET last_heartbeat = beat.at FROM beat
		WHERE nodes.id = beat.id AND nodes.cert_serial = beat.serial AND nodes.state = ?
		RETURNING nodes.id, nodes.cert_serial`)
	args = append(args, NodeUp)
	rows, err := tx.Query(ctx, q.String(), args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	type key struct{ node, serial string }
	written := make(map[key]bool, len(beats))
	for rows.Next() {
		var k key
		if err := rows.Scan(&k.node, &k.serial); err != nil {
			return err
		}
		written[k] = true
	}
	if err := rows.Err(); err != nil {
		return err
	}
	for i, b := range beats {
		ok[i] = written[key{b.node, b.serial}]
	}
	return nil
}
