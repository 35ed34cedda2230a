package cluster

import (
	"context"
	"fmt"
	"strings"
	"time"

	"ironbark/internal/gather"
	"ironbark/internal/store"
)

// A node API call whose node is not in the authentication cache
// (nodecache.go) reads the node's row. At 10,000 nodes answering a launch
// burst those reads were thousands a second, one query each, and in a
// trace of paced launches on PostgreSQL they held the node lane's
// connections: 86% of its waits for a connection were theirs, and the
// reads that build a launched node's answer waited behind them. nodeReads
// gathers the reads asked for while one is running into the next one, a
// query for all: one at a time, so a busy store reads bigger groups, not
// more of them. A read always starts after it was asked for, so what it
// returns is as fresh as a query of its own.
type nodeReads struct {
	db     *store.DB
	gather *gather.Gatherer[string, nodeRead]
}

type nodeRead struct {
	node  Node
	found bool
}

func newNodeReads(db *store.DB) *nodeReads {
	r := &nodeReads{db: db}
	r.gather = gather.New(r.readAll, 0, time.Minute)
	return r
}

// nodeReadChunk bounds the IDs of one query.
const nodeReadChunk = 1000

// read returns the node's row as read after the call began, or an error
// wrapping store.ErrNotFound.
func (r *nodeReads) read(ctx context.Context, id string) (Node, error) {
	got, err := r.gather.Do(ctx, id)
	if err != nil {
		return Node{}, err
	}
	if !got.found {
		return Node{}, fmt.Errorf("node %s: %w", id, store.ErrNotFound)
	}
	return got.node, nil
}

// readAll reads a group's nodes, each once however often it was asked for.
func (r *nodeReads) readAll(ctx context.Context, asked []string) ([]nodeRead, error) {
	return gather.ByKey(ctx, asked, nodeReadChunk, func(ctx context.Context, ids []string, got map[string]nodeRead) error {
		args := make([]any, len(ids))
		for i, id := range ids {
			args[i] = id
		}
		rows, err := r.db.Query(ctx, `SELECT `+nodeSelectCols+` FROM nodes WHERE id IN (`+
			strings.TrimSuffix(strings.Repeat("?, ", len(ids)), ", ")+`)`, args...)
		if err != nil {
			return fmt.Errorf("read %d nodes: %w", len(ids), err)
		}
		defer rows.Close()
		for rows.Next() {
			n, err := scanNode(rows)
			if err != nil {
				return fmt.Errorf("read %d nodes: %w", len(ids), err)
			}
			got[n.ID] = nodeRead{node: n, found: true}
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("read %d nodes: %w", len(ids), err)
		}
		return nil
	})
}
