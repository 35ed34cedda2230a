package controller

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"ironbark/internal/store"
	"ironbark/internal/store/storetest"
)

func TestWarmPlacement(t *testing.T) {
	storetest.Each(t, Migrations(), func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		e := newTestEnv(t, db)
		c := e.client(e.alice)
		e.run(c, 2, "") // 10.88.0.10, .11
		dbSeq := func() int64 {
			var seq int64
			if err := db.QueryRow(ctx, `SELECT seq FROM launch_seq`).Scan(&seq); err != nil {
				t.Fatal(err)
			}
			return seq
		}
		tk, uc := &e.cloud.takenIPs, &e.cloud.usageCache
		quiet := func() uint64 { // every copy past its age, as after a quiet spell
			tk.mu.Lock()
			tk.read = time.Time{}
			epoch := tk.epoch
			tk.mu.Unlock()
			uc.mu.Lock()
			uc.at = time.Time{}
			uc.mu.Unlock()
			return epoch
		}
		epoch := quiet()
		e.cloud.warmPlacement(ctx)
		tk.mu.Lock()
		if tk.epoch != epoch+1 || !tk.seqKnown || tk.seq != dbSeq() || !tk.set["10.88.0.10"] || !tk.set["10.88.0.11"] {
			t.Fatalf("taken addresses after warming: epoch %d (was %d), seq %d known %v (store %d), set %v",
				tk.epoch, epoch, tk.seq, tk.seqKnown, dbSeq(), tk.set)
		}
		tk.mu.Unlock()
		uc.mu.Lock()
		if uc.at.IsZero() || uc.seq != dbSeq() {
			t.Fatalf("usage after warming: read at %v, seq %d (store %d)", uc.at, uc.seq, dbSeq())
		}
		uc.mu.Unlock()

		// The launch trusts the warmed copy: no whole read under the lock.
		out := e.run(c, 1, "")
		if ip := aws.ToString(out.Instances[0].PrivateIpAddress); ip != "10.88.0.12" {
			t.Fatalf("launch after warming: %s, want 10.88.0.12", ip)
		}
		tk.mu.Lock()
		if tk.epoch != epoch+1 || !tk.seqKnown || tk.seq != dbSeq() {
			t.Fatalf("the launch reread the taken addresses (epoch %d, want %d) or lost their sequence (%d known %v, store %d)",
				tk.epoch, epoch+1, tk.seq, tk.seqKnown, dbSeq())
		}
		tk.mu.Unlock()

		// An address a launch under way picked before the read stays taken
		// (its commit may come after the read's snapshot).
		quiet()
		tk.mu.Lock()
		tk.pending = []string{"10.88.0.13"}
		tk.mu.Unlock()
		if err := e.cloud.warmTakenIPs(ctx); err != nil {
			t.Fatal(err)
		}
		if ip := aws.ToString(e.run(c, 1, "").Instances[0].PrivateIpAddress); ip != "10.88.0.14" {
			t.Fatalf("launch after a read that kept a pick under way: %s, want 10.88.0.14", ip)
		}

	})
}

// A read made outside the placement lock whose snapshot predates launches
// this controller committed while it ran keeps the copy exact at the
// latest of them (those launches' picks are carried), so the next launch
// trusts it without checking its picks against the store; a copy that
// was not exact stays at the read's sequence.
func TestWarmReadBehindOwnLaunches(t *testing.T) {
	var tk takenIPs
	tk.install(map[string]bool{"10.88.0.10": true}, 5)
	epoch := tk.epoch
	// Two launches of this controller commit (sequences 6 and 7) while a
	// read at sequence 5 runs; the second was under way when it began.
	tk.warming = true
	tk.picked = []string{"10.88.0.11"}
	tk.launched(6)
	tk.launched(7)
	tk.installWarm(map[string]bool{"10.88.0.10": true}, 5, epoch, []string{"10.88.0.12"})
	if !tk.seqKnown || tk.seq != 7 || !tk.set["10.88.0.11"] || !tk.set["10.88.0.12"] || tk.epoch != epoch+1 {
		t.Fatalf("copy after a read behind two launches: seq %d known %v, set %v, epoch %d (was %d)", tk.seq, tk.seqKnown, tk.set, tk.epoch, epoch)
	}

	// Another controller launched (sequence 8, not this one's): the copy
	// is not exact, and a read at 7 is exact at 7 only.
	tk.launched(9)
	epoch = tk.epoch
	tk.installWarm(map[string]bool{}, 7, epoch, nil)
	if !tk.seqKnown || tk.seq != 7 {
		t.Fatalf("copy after a read when it was not exact: seq %d known %v, want 7", tk.seq, tk.seqKnown)
	}

	// A read that a newer whole read overtook is dropped.
	tk.install(map[string]bool{"10.88.0.20": true}, 10)
	tk.installWarm(map[string]bool{}, 9, epoch, nil)
	if tk.seq != 10 || !tk.set["10.88.0.20"] {
		t.Fatalf("an overtaken read replaced the copy: seq %d, set %v", tk.seq, tk.set)
	}
}
