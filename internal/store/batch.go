package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
)

// Execer runs a statement whose rows are not read: a transaction, or a
// Batch that gathers it.
type Execer interface {
	Exec(ctx context.Context, q string, args ...any) (sql.Result, error)
}

// Batch gathers writes whose results are not read and runs them in one
// round trip on PostgreSQL: one statement whose data-modifying WITH
// clauses are the gathered statements. A launch wrote its reservation,
// instances, tags, usage events and node usage in a round trip each, all
// under the placement lock that every launch queues behind; on a busy
// controller each round trip also waited its turn to run again.
//
// The gathered statements run with one snapshot and in no set order, so a
// Batch may hold only writes that neither read what another of them
// writes nor write the same row (triggers and foreign keys run after the
// statement and do see all of them). On SQLite they run one after the
// other (no round trips there). The zero value is empty.
type Batch struct {
	stmts []batchStmt
}

type batchStmt struct {
	q    string
	args []any
}

// Exec gathers one write (q with "?" placeholders); it never fails: errors
// come from Run. Its result is nil. The batch keeps args until it runs:
// the caller must not reuse their array meanwhile.
func (b *Batch) Exec(_ context.Context, q string, args ...any) (sql.Result, error) {
	b.stmts = append(b.stmts, batchStmt{q: q, args: args})
	return nil, nil
}

// Len is how many statements the batch holds.
func (b *Batch) Len() int { return len(b.stmts) }

// Run runs the gathered writes in tx and empties the batch.
func (b *Batch) Run(ctx context.Context, tx *Tx) error {
	if len(b.stmts) == 0 {
		return nil
	}
	return b.run(ctx, tx, "", nil, nil)
}

// QueryRow runs the gathered writes and then q, whose one row it scans
// into dest: on PostgreSQL q is the statement the writes are WITH
// clauses of, so all are one round trip. q runs with the writes'
// snapshot: it must not read what they write. The notifications tx
// gathered so far (Tx.Publish) ride in the same statement, as the
// transaction's last one would otherwise send them on its own at the
// commit: a launch's writes are its last statement under the placement
// lock, and that round trip was one more for every launch queued behind.
func (b *Batch) QueryRow(ctx context.Context, tx *Tx, q string, args []any, dest ...any) error {
	return b.run(ctx, tx, q, args, dest)
}

func (b *Batch) run(ctx context.Context, tx *Tx, q string, args []any, dest []any) error {
	stmts := b.stmts
	b.stmts = nil
	if tx.engine != Postgres {
		for _, s := range stmts {
			if _, err := tx.Exec(ctx, s.q, s.args...); err != nil {
				return err
			}
		}
		if q == "" {
			return nil
		}
		return tx.QueryRow(ctx, q, args...).Scan(dest...)
	}
	// Statements go together while their parameters fit one statement;
	// the last group ends with q (or its own last write).
	for len(stmts) > 0 || q != "" {
		n, params := 0, len(args)
		for n < len(stmts) && (n == 0 || params+len(stmts[n].args) <= maxParams) {
			params += len(stmts[n].args)
			n++
		}
		group := stmts[:n]
		stmts = stmts[n:]
		main, mainArgs, isQ := q, args, true
		if len(stmts) > 0 || q == "" {
			// Not the last group, or no q: the group's last write is
			// its main statement.
			last := group[len(group)-1]
			group, main, mainArgs, isQ = group[:len(group)-1], last.q, last.args, false
		}
		var sb strings.Builder
		all := make([]any, 0, params)
		for i, s := range group {
			if i == 0 {
				sb.WriteString("WITH ")
			} else {
				sb.WriteString(", ")
			}
			fmt.Fprintf(&sb, "batch%d AS (%s)", i, s.q)
			all = append(all, s.args...)
		}
		notes := isQ && len(tx.notes) > 0 && len(tx.notes)/2 <= notesPerStmt && params+len(tx.notes) <= maxParams
		if notes {
			// q becomes a clause too, and the notifications one that
			// the statement reads, so that it runs: PostgreSQL skips a
			// SELECT clause nothing reads.
			if len(group) == 0 {
				sb.WriteString("WITH ")
			} else {
				sb.WriteString(", ")
			}
			fmt.Fprintf(&sb, "batchq AS (%s), notes AS (SELECT ", main)
			all = append(all, mainArgs...)
			for i := 0; i < len(tx.notes); i += 2 {
				if i > 0 {
					sb.WriteString(", ")
				}
				sb.WriteString("pg_notify(?, ?)")
				all = append(all, tx.notes[i], tx.notes[i+1])
			}
			sb.WriteString(") SELECT batchq.* FROM batchq CROSS JOIN notes")
			tx.notes = nil
		} else {
			if len(group) > 0 {
				sb.WriteByte(' ')
			}
			sb.WriteString(main)
			all = append(all, mainArgs...)
		}
		if isQ {
			return tx.QueryRow(ctx, sb.String(), all...).Scan(dest...)
		}
		if _, err := tx.Exec(ctx, sb.String(), all...); err != nil {
			return err
		}
	}
	return nil
}
