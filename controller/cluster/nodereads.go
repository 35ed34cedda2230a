package cluster

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

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
	db *store.DB

	mu      sync.Mutex
	open    *nodeReadGroup // collecting, nil when none
	reading sync.Mutex     // held by the group being read
	queries atomic.Int64   // groups read (tests)
}

type nodeReadGroup struct {
	ids   []string
	asked int // calls waiting on the group (tests)
	want  map[string]bool
	got   map[string]Node
	err   error
	done  chan struct{}
}

// nodeReadChunk bounds the IDs of one query.
const nodeReadChunk = 1000

// read returns the node's row as read after the call began, or an error
// wrapping store.ErrNotFound.
func (r *nodeReads) read(ctx context.Context, id string) (Node, error) {
	r.mu.Lock()
	g := r.open
	lead := g == nil
	if lead {
		g = &nodeReadGroup{want: map[string]bool{}, done: make(chan struct{})}
		r.open = g
	}
	if !g.want[id] {
		g.want[id] = true
		g.ids = append(g.ids, id)
	}
	g.asked++
	r.mu.Unlock()
	if lead {
		r.reading.Lock()
		r.mu.Lock()
		r.open = nil // from here on, callers join the next group
		r.mu.Unlock()
		// The group is everyone's: the leader's caller going away does
		// not fail the others' reads.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		g.got, g.err = r.readAll(rctx, g.ids)
		cancel()
		r.queries.Add(1)
		r.reading.Unlock()
		close(g.done)
	} else {
		select {
		case <-g.done:
		case <-ctx.Done():
			return Node{}, ctx.Err()
		}
	}
	if g.err != nil {
		return Node{}, g.err
	}
	n, ok := g.got[id]
	if !ok {
		return Node{}, fmt.Errorf("node %s: %w", id, store.ErrNotFound)
	}
	return n, nil
}

func (r *nodeReads) readAll(ctx context.Context, ids []string) (map[string]Node, error) {
	got := make(map[string]Node, len(ids))
	for len(ids) > 0 {
		chunk := ids[:min(len(ids), nodeReadChunk)]
		ids = ids[len(chunk):]
		args := make([]any, len(chunk))
		for i, id := range chunk {
			args[i] = id
		}
		rows, err := r.db.Query(ctx, `SELECT `+nodeSelectCols+` FROM nodes WHERE id IN (`+
			strings.TrimSuffix(strings.Repeat("?, ", len(chunk)), ", ")+`)`, args...)
		if err != nil {
			return nil, fmt.Errorf("read %d nodes: %w", len(chunk), err)
		}
		for rows.Next() {
			n, err := scanNode(rows)
			if err != nil {
				rows.Close()
				return nil, fmt.Errorf("read %d nodes: %w", len(chunk), err)
			}
			got[n.ID] = n
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, fmt.Errorf("read %d nodes: %w", len(chunk), err)
		}
	}
	return got, nil
}
