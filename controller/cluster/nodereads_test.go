package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"ironbark/internal/nodeapi"
	"ironbark/internal/store"
	"ironbark/internal/store/storetest"
)

// TestNodeReadsGather: reads of nodes asked for while one is running are
// read together in the next query, each caller gets its own node's row
// (one asked for twice, once), and an unknown node is not found.
func TestNodeReadsGather(t *testing.T) {
	storetest.Each(t, nil, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		s := newService(t, db, newMemLedger())
		if err := s.AddCluster(ctx, "zone-a", "GREEDY"); err != nil {
			t.Fatal(err)
		}
		var ids []string
		for range 30 {
			ids = append(ids, addNode(t, s, "zone-a", nodeapi.Capacity{Cores: 2, MemoryMiB: 1024, DiskGiB: 10}))
		}
		r := s.reads
		// Hold the reader as a running query would: every read asked
		// for meanwhile waits in one group.
		release := r.gather.Hold()
		before := r.gather.Runs()
		var wg sync.WaitGroup
		errs := make(chan error, 2*len(ids)+1)
		ask := func(id string, want error) {
			defer wg.Done()
			n, err := r.read(ctx, id)
			switch {
			case want != nil && !errors.Is(err, want):
				errs <- fmt.Errorf("read %s: %v, want %v", id, err, want)
			case want == nil && err != nil:
				errs <- fmt.Errorf("read %s: %v", id, err)
			case want == nil && n.ID != id:
				errs <- fmt.Errorf("read %s: got node %s", id, n.ID)
			}
		}
		for _, id := range ids {
			wg.Add(2)
			go ask(id, nil)
			go ask(id, nil)
		}
		wg.Add(1)
		go ask("no-such-node", store.ErrNotFound)
		// Wait until every call has joined the open group.
		for r.gather.Waiting() != 2*len(ids)+1 {
			time.Sleep(time.Millisecond)
		}
		release()
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		if q := r.gather.Runs() - before; q != 1 {
			t.Errorf("%d reads of %d nodes took %d groups, want 1", 2*len(ids)+1, len(ids)+1, q)
		}
		// A group names each node once in its query and answers every
		// call, in the calls' order.
		got, err := r.readAll(ctx, []string{ids[1], ids[0], ids[1], "no-such-node"})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 4 || got[0].node.ID != ids[1] || got[1].node.ID != ids[0] || got[2].node.ID != ids[1] || got[3].found {
			t.Errorf("readAll: %+v", got)
		}
	})
}
