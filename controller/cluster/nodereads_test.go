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
		r.reading.Lock()
		before := r.queries.Load()
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
		for {
			r.mu.Lock()
			asked, distinct := 0, 0
			if r.open != nil {
				asked, distinct = r.open.asked, len(r.open.ids)
			}
			r.mu.Unlock()
			if asked == 2*len(ids)+1 {
				if distinct != len(ids)+1 {
					t.Errorf("the group names %d nodes, want %d", distinct, len(ids)+1)
				}
				break
			}
			time.Sleep(time.Millisecond)
		}
		r.reading.Unlock()
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		if q := r.queries.Load() - before; q != 1 {
			t.Errorf("%d reads of %d nodes took %d queries, want 1", 2*len(ids)+1, len(ids)+1, q)
		}
	})
}
