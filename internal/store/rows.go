package store

import (
	"context"
	"fmt"
	"strings"
)

// maxParams is how many parameters one statement of ExecRows binds: under
// SQLite's limit (32,766) and PostgreSQL's (65,535).
const maxParams = 30000

// ExecRows runs head + "(?, ...), (?, ...)" + tail with args, cols values a
// row, in as few statements as the parameter limit allows: a round trip
// for many rows where a statement per row cost one each. head ends with
// VALUES; tail may be "" or, say, an ON CONFLICT clause.
func ExecRows(ctx context.Context, q Execer, head string, cols int, args []any, tail string) error {
	if cols <= 0 || len(args)%cols != 0 {
		return fmt.Errorf("exec rows: %d values do not make rows of %d", len(args), cols)
	}
	per := max(1, maxParams/cols) // rows a statement
	for len(args) > 0 {
		n := min(len(args)/cols, per)
		if _, err := q.Exec(ctx, head+" "+Values(n, cols)+" "+tail, args[:n*cols]...); err != nil {
			return err
		}
		args = args[n*cols:]
	}
	return nil
}

// Values is "(?, ?), (?, ?)" for rows rows of cols placeholders each.
func Values(rows, cols int) string {
	row := "(" + strings.TrimSuffix(strings.Repeat("?, ", cols), ", ") + ")"
	var b strings.Builder
	b.Grow(rows * (len(row) + 2))
	for i := range rows {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(row)
	}
	return b.String()
}
