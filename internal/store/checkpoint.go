package store

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// On SQLite every connection is opened with automatic WAL checkpoints off
// (wal_autocheckpoint=0), and the DB's checkpointer runs them in the
// background, on a pooled connection. SQLite otherwise runs one inside
// the COMMIT that fills the WAL past 1,000 pages, with its two fsyncs,
// while that commit holds the write slot: every writer queued behind it
// (a launch burst's RunInstances, a thousand nodes' heartbeats) waits for
// the disk. Durability is the same either way, SQLite's WAL with
// synchronous=NORMAL: a committed transaction is in the WAL file when
// COMMIT returns (it survives the process), and is fsynced at the next
// checkpoint. Another process writing the same file (the CLI) checkpoints
// with its own DB the same way, and SQLite checkpoints when the last
// connection to the file closes.
//
// A background checkpoint starts after every ckptEvery commits, when none
// is running, and once the commits pause for ckptQuiet. A PASSIVE
// checkpoint copies to the database what the WAL holds when it starts,
// while writers go on appending; the WAL starts over from its beginning
// only when a write begins with all of it copied, which a stream of
// commits does not allow: the checkpoint after a pause is the one that
// completes, so that the WAL restarts with the next burst instead of
// growing through all of them (writing over its own blocks instead of
// extending the file). Past walLimit frames (4 KiB each) a checkpoint
// holds the write slot, so that it completes even under commits that
// never pause.
// walKeepBytes is what is left of the WAL file when it starts over after
// a completed checkpoint (journal_size_limit): without it the file stays
// as large as the longest stream of commits made it, up to walLimit
// frames, 64 MiB; SQLite's own checkpoints had kept it near 4 MiB.
const walKeepBytes = 4 << 20

const (
	ckptEvery = 64
	ckptQuiet = 100 * time.Millisecond
	walLimit  = 16384
)

// checkpointer schedules a DB's background checkpoints.
type checkpointer struct {
	db *DB

	mu      sync.Mutex
	commits int         // since the last background checkpoint started
	total   uint64      // commits ever (the quiet timer compares it)
	quiet   *time.Timer // armed while commits wait for a checkpoint
	running bool        // a checkpoint runs
	closed  bool
	wg      sync.WaitGroup // close waits for a running checkpoint
}

// committed counts a commit (of a transaction or of a statement outside
// one) that may have written to the WAL.
func (k *checkpointer) committed() {
	if k == nil {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed {
		return
	}
	k.commits++
	k.total++
	if k.commits >= ckptEvery {
		k.later()
	} else if k.quiet == nil {
		k.armQuiet()
	}
}

// idle reports whether nothing is pending: no checkpoint running, no
// quiet timer armed, no commit left uncounted (tests).
func (k *checkpointer) idle() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.commits == 0 && k.quiet == nil && !k.running
}

// close stops scheduling checkpoints and waits for a running one.
func (k *checkpointer) close() {
	if k == nil {
		return
	}
	k.mu.Lock()
	k.closed = true
	if k.quiet != nil {
		k.quiet.Stop()
		k.quiet = nil
	}
	k.mu.Unlock()
	k.wg.Wait()
}

// armQuiet starts the timer that checkpoints once no commit has come for
// ckptQuiet. Called with k.mu held.
func (k *checkpointer) armQuiet() {
	seen := k.total
	k.quiet = time.AfterFunc(ckptQuiet, func() {
		k.mu.Lock()
		defer k.mu.Unlock()
		k.quiet = nil
		switch {
		case k.closed || k.commits == 0:
		case k.total != seen:
			k.armQuiet() // still committing: look again later
		default:
			k.later()
		}
	})
}

// later starts a background checkpoint unless one runs (when it ends, it
// arms the quiet timer if commits came meanwhile). Called with k.mu held.
func (k *checkpointer) later() {
	if k.running {
		return
	}
	k.running, k.commits = true, 0
	k.wg.Add(1)
	go func() {
		defer k.wg.Done()
		ctx := context.Background()
		frames, err := k.db.checkpoint(ctx)
		if err == nil && frames > walLimit {
			if release, err := k.db.write(ctx); err == nil {
				_, _ = k.db.checkpoint(ctx)
				release()
			}
		}
		k.mu.Lock()
		k.running = false
		if k.commits > 0 && k.quiet == nil && !k.closed {
			k.armQuiet()
		}
		k.mu.Unlock()
	}()
}

// checkpoint runs a PASSIVE checkpoint of SQLite's WAL on a pooled
// connection and returns the WAL's size in frames before it.
func (db *DB) checkpoint(ctx context.Context) (frames int, err error) {
	var busy, done int
	if err := db.sql.QueryRowContext(ctx, `PRAGMA wal_checkpoint(PASSIVE)`).Scan(&busy, &frames, &done); err != nil {
		return 0, fmt.Errorf("wal checkpoint: %w", err)
	}
	return frames, nil
}
