package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Several controllers on one PostgreSQL tell each other about changes with
// LISTEN/NOTIFY: a controller that changed something another one may be
// waiting on (a node's desired instances) publishes on a channel, and every
// controller listening on it hears it. SQLite serves one controller, whose
// changes are seen in its own memory: there Publish does nothing and Listen
// returns at once.

// MaxPayload is the longest payload Publish sends: PostgreSQL refuses
// NOTIFY payloads of 8,000 bytes and more.
const MaxPayload = 7900

// ErrPayloadTooLong is returned by Publish for a payload over MaxPayload.
var ErrPayloadTooLong = errors.New("notification payload too long")

// CanNotify reports whether other processes on the database hear what
// Publish sends (PostgreSQL).
func (db *DB) CanNotify() bool { return db.engine == Postgres }

// Publish sends payload to every process listening on channel; it is
// delivered once the statement commits (at once outside a transaction).
// On SQLite it does nothing.
func (db *DB) Publish(ctx context.Context, channel, payload string) error {
	if db.engine != Postgres {
		return nil
	}
	if len(payload) > MaxPayload {
		return fmt.Errorf("publish on %s: %w (%d bytes)", channel, ErrPayloadTooLong, len(payload))
	}
	if _, err := db.sql.ExecContext(ctx, `SELECT pg_notify($1, $2)`, channel, payload); err != nil {
		return fmt.Errorf("publish on %s: %w", channel, err)
	}
	return nil
}

// Publish sends payload to every process listening on channel when the
// transaction commits, and never if it rolls back (PostgreSQL delivers a
// transaction's notifications at its commit). A change and its
// notification then cannot part: a process killed between the two used to
// leave the other processes unaware of a change it had committed. The
// transaction's notifications are sent together, in the order published,
// in one statement just before its commit: a transaction that publishes
// several (a launch: its nodes and its security groups) pays one round
// trip. On SQLite it does nothing.
func (tx *Tx) Publish(ctx context.Context, channel, payload string) error {
	if tx.engine != Postgres {
		return nil
	}
	if len(payload) > MaxPayload {
		return fmt.Errorf("publish on %s: %w (%d bytes)", channel, ErrPayloadTooLong, len(payload))
	}
	tx.notes = append(tx.notes, channel, payload)
	return nil
}

// notesPerStmt is how many notifications one statement sends: each is a
// column of its one row, and PostgreSQL allows 1,664.
const notesPerStmt = 100

// sendNotes sends the notifications Publish gathered that no Batch took,
// in one statement per 100 (PostgreSQL queues them until the commit).
func (tx *Tx) sendNotes(ctx context.Context) error {
	for notes := tx.notes; len(notes) > 0; {
		n := min(len(notes)/2, notesPerStmt)
		var q strings.Builder
		q.WriteString("SELECT ")
		for i := range n {
			if i > 0 {
				q.WriteString(", ")
			}
			fmt.Fprintf(&q, "pg_notify($%d, $%d)", 2*i+1, 2*i+2)
		}
		args := make([]any, 2*n)
		for i := range args {
			args[i] = notes[i]
		}
		if _, err := tx.tx.ExecContext(ctx, q.String(), args...); err != nil {
			return fmt.Errorf("publish on %s: %w", notes[0], err)
		}
		notes = notes[2*n:]
	}
	tx.notes = nil
	return nil
}

// ListenHandlers are what Listen calls.
type ListenHandlers struct {
	// Message is called with each payload heard, in order, from Listen's
	// goroutine.
	Message func(payload string)
	// Connected is called each time the listening connection is (re)made
	// and listening: what was published while it was down is lost, so a
	// caller that waits on notifications rechecks everything then.
	Connected func()
	// Lost is called with the error that broke the connection, before
	// Listen reconnects.
	Lost func(err error)
}

// Listen hears channel on a connection of its own until ctx ends,
// reconnecting (with backoff) whenever the connection breaks. It returns
// nil when ctx ends. On SQLite it returns nil at once.
func (db *DB) Listen(ctx context.Context, channel string, h ListenHandlers) error {
	if db.engine != Postgres {
		return nil
	}
	wait := 50 * time.Millisecond
	for ctx.Err() == nil {
		err := db.listenOnce(ctx, channel, h)
		if ctx.Err() != nil {
			return nil
		}
		if h.Lost != nil {
			h.Lost(err)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
		wait = min(2*wait, 5*time.Second)
	}
	return nil
}

func (db *DB) listenOnce(ctx context.Context, channel string, h ListenHandlers) error {
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	conn, err := pgx.Connect(cctx, db.url)
	cancel()
	if err != nil {
		return fmt.Errorf("listen on %s: connect: %w", channel, err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		conn.Close(cctx)
	}()
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{channel}.Sanitize()); err != nil {
		return fmt.Errorf("listen on %s: %w", channel, err)
	}
	if h.Connected != nil {
		h.Connected()
	}
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return fmt.Errorf("listen on %s: %w", channel, err)
		}
		if h.Message != nil {
			h.Message(n.Payload)
		}
	}
}
