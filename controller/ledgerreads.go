package controller

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"ironbark/internal/gather"
)

// Every heartbeat asks whether what its node reports would change the
// node's instance records (unchanged), and almost every answer is no. At
// 10,000 nodes that was 1,000 queries a second, one round trip and one
// statement each for PostgreSQL to parse, plan and run, on the two cores
// the launches need. ledgerReads gathers the reads asked for while one is
// running into the next one, a query for all their nodes: a busy store
// reads bigger groups, not more of them. A read starts after it was asked
// for, so what it says is as fresh as a query of its own.
type ledgerReads struct {
	gather *gather.Gatherer[string, []ledgerRec]
}

// ledgerRec is what unchanged needs of an instance on a node.
type ledgerRec struct {
	id, state, desired string
}

// ledgerReadChunk bounds the nodes of one query (a node holds tens of
// instances, terminated ones included until they are purged). A variable
// so a test can make a group span several queries.
var ledgerReadChunk = 500

func newLedgerReads(c *Cloud) *ledgerReads {
	return &ledgerReads{gather: gather.New(c.readLedgers, 0, time.Minute)}
}

// read returns the records of the instances placed on node, as read after
// the call began.
func (r *ledgerReads) read(ctx context.Context, node string) ([]ledgerRec, error) {
	return r.gather.Do(ctx, node)
}

// readLedgers reads the instances of a group's nodes, each node once
// however often it was asked for, in chunks of ledgerReadChunk nodes.
func (c *Cloud) readLedgers(ctx context.Context, asked []string) ([][]ledgerRec, error) {
	nodes := slices.Compact(slices.Sorted(slices.Values(asked)))
	got := make(map[string][]ledgerRec, len(nodes))
	for len(nodes) > 0 {
		chunk := nodes[:min(len(nodes), ledgerReadChunk)]
		nodes = nodes[len(chunk):]
		if err := c.readLedgerChunk(ctx, chunk, got); err != nil {
			return nil, fmt.Errorf("read the instances of %d nodes: %w", len(chunk), err)
		}
	}
	out := make([][]ledgerRec, len(asked))
	for i, n := range asked {
		out[i] = got[n]
	}
	return out, nil
}

func (c *Cloud) readLedgerChunk(ctx context.Context, nodes []string, got map[string][]ledgerRec) error {
	rows, err := c.db.Query(ctx, `SELECT node_id, id, state, desired FROM instances WHERE node_id IN (?`+
		strings.Repeat(`, ?`, len(nodes)-1)+`)`, anySlice(nodes)...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var node string
		var r ledgerRec
		if err := rows.Scan(&node, &r.id, &r.state, &r.desired); err != nil {
			return err
		}
		got[node] = append(got[node], r)
	}
	return rows.Err()
}
