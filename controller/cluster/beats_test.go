package cluster

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"ironbark/internal/store"
	"ironbark/internal/store/storetest"
)

// Many heartbeats at once, while another writer holds the store: every
// one is recorded with its own node and serial, in groups, and one whose
// serial is not the node's (re-enrolled) or whose node is unknown is not.
// A node's agent beating twice in one group is answered twice. Groups span
// several statements.
func TestBeatWriterGroups(t *testing.T) {
	defer func(n int) { beatsPerStatement = n }(beatsPerStatement)
	beatsPerStatement = 7
	storetest.Each(t, nil, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		r, err := NewRegistry(ctx, db)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.AddCluster(ctx, "zone-a", "GREEDY"); err != nil {
			t.Fatal(err)
		}
		const nodes = 60
		err = db.InTx(ctx, func(tx *store.Tx) error {
			for i := range nodes {
				if _, err := tx.Exec(ctx, `INSERT INTO nodes (id, cluster, hostname, cores, memory_mib, disk_gib, hypervisor,
					cert_serial, enrolled_at, last_heartbeat, state) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
					fmt.Sprintf("node-%02d", i), "zone-a", "h", 4, 4096, 100, "test:///", "serial", 1, 1, NodeUp); err != nil {
					return err
				}
			}
			// A node marked down since its heartbeat's node was read: the
			// time alone does not bring it back (the whole update does).
			_, err := tx.Exec(ctx, `INSERT INTO nodes (id, cluster, hostname, cores, memory_mib, disk_gib, hypervisor,
				cert_serial, enrolled_at, last_heartbeat, state) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
				"node-down", "zone-a", "h", 4, 4096, 100, "test:///", "serial", 1, 1, NodeDown)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		// A slow writer holds the store while the first heartbeats
		// arrive: they wait for it as groups.
		held := make(chan struct{})
		release := make(chan struct{})
		go func() {
			_ = db.InTx(ctx, func(tx *store.Tx) error {
				if _, err := tx.Exec(ctx, `UPDATE clusters SET policy = policy WHERE name = ?`, "zone-a"); err != nil {
					return err
				}
				close(held)
				<-release
				return nil
			})
		}()
		<-held
		type answer struct {
			ok  bool
			err error
		}
		answers := make([]answer, nodes+4)
		var wg sync.WaitGroup
		for i := range nodes {
			wg.Go(func() {
				ok, err := r.beats.record(ctx, fmt.Sprintf("node-%02d", i), "serial", int64(1000+i))
				answers[i] = answer{ok, err}
			})
		}
		wg.Go(func() {
			ok, err := r.beats.record(ctx, "node-00", "old-serial", 5000)
			answers[nodes] = answer{ok, err}
		})
		wg.Go(func() {
			ok, err := r.beats.record(ctx, "node-unknown", "serial", 5000)
			answers[nodes+1] = answer{ok, err}
		})
		wg.Go(func() {
			ok, err := r.beats.record(ctx, "node-down", "serial", 5000)
			answers[nodes+2] = answer{ok, err}
		})
		wg.Go(func() {
			ok, err := r.beats.record(ctx, "node-01", "serial", 1001)
			answers[nodes+3] = answer{ok, err}
		})
		time.Sleep(20 * time.Millisecond) // let some groups form and wait (not asserted)
		close(release)
		wg.Wait()
		for i, a := range answers {
			want := i < nodes || i == nodes+3
			if a.err != nil || a.ok != want {
				t.Fatalf("heartbeat %d: ok %v err %v, want ok %v", i, a.ok, a.err, want)
			}
		}
		for i := range nodes {
			var at int64
			var state string
			if err := db.QueryRow(ctx, `SELECT last_heartbeat, state FROM nodes WHERE id = ?`, fmt.Sprintf("node-%02d", i)).
				Scan(&at, &state); err != nil {
				t.Fatal(err)
			}
			if at != int64(1000+i) || state != NodeUp {
				t.Fatalf("node-%02d: last heartbeat %d, state %s", i, at, state)
			}
		}
		var at int64
		var state string
		if err := db.QueryRow(ctx, `SELECT last_heartbeat, state FROM nodes WHERE id = 'node-down'`).Scan(&at, &state); err != nil {
			t.Fatal(err)
		}
		if at != 1 || state != NodeDown {
			t.Fatalf("node-down: last heartbeat %d, state %s; want it untouched", at, state)
		}
	})
}
