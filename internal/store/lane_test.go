package store_test

import (
	"context"
	"testing"
	"time"

	"ironbark/internal/store"
	"ironbark/internal/store/storetest"
)

// TestNodeLane holds every connection of one lane in open transactions
// and checks that the other lane's statements still run at once; on
// SQLite, one pool serves both.
func TestNodeLane(t *testing.T) {
	db := storetest.Postgres(t, testSchema)
	for _, tc := range []struct {
		name        string
		busy, other context.Context
	}{
		{"nodes flood, EC2 API runs", store.NodeLane(context.Background()), context.Background()},
		{"EC2 API busy, nodes run", context.Background(), store.NodeLane(context.Background())},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Fill the busy lane: each transaction holds a connection
			// until release closes.
			release := make(chan struct{})
			done := make(chan error, 64)
			for range 16 {
				go func() {
					done <- db.InTx(tc.busy, func(tx *store.Tx) error {
						if _, err := tx.Exec(tc.busy, `SELECT 1`); err != nil {
							return err
						}
						<-release
						return nil
					})
				}()
			}
			// The busy lane is full once one more statement in it
			// cannot get a connection.
			deadline := time.Now().Add(30 * time.Second)
			for {
				ctx, cancel := context.WithTimeout(tc.busy, 100*time.Millisecond)
				var one int
				err := db.QueryRow(ctx, `SELECT 1`).Scan(&one)
				cancel()
				if err != nil {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("the busy lane never filled")
				}
			}
			ctx, cancel := context.WithTimeout(tc.other, 10*time.Second)
			defer cancel()
			if _, err := db.Exec(ctx, `INSERT INTO kv (k, v) VALUES (?, 1)`, tc.name); err != nil {
				t.Fatalf("the other lane waited on the busy one: %v", err)
			}
			if err := db.InTx(ctx, func(tx *store.Tx) error {
				_, err := tx.Exec(ctx, `UPDATE kv SET v = 2 WHERE k = ?`, tc.name)
				return err
			}); err != nil {
				t.Fatalf("a transaction in the other lane: %v", err)
			}
			close(release)
			for range 16 {
				if err := <-done; err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}
