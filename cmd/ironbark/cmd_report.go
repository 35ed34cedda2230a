package main

import (
	"context"
	"encoding/csv"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"ironbark/controller"
	"ironbark/controller/usage"
)

// Usage reports (controller/accounting.go and controller/usage do the
// work).

func reportUsage(fs *flag.FlagSet) runFunc {
	since := fs.String("since", "24h", "start of the period: a duration back from now (24h, 720h) or a time (2006-01-02 or RFC 3339)")
	until := fs.String("until", "", "end of the period (not included): a duration back from now or a time; now when empty")
	by := fs.String("by", usage.ByAccount, "group by "+strings.Join(usage.Dimensions(), ", "))
	format := fs.String("format", "table", "table, csv or json")
	return func(ctx context.Context, e *env) error {
		now := time.Now()
		q := controller.UsageQuery{By: *by, Until: now}
		var err error
		if q.Since, err = parseSince(*since, now); err != nil {
			return e.usagef("--since: %v", err)
		}
		if *until != "" {
			if q.Until, err = parseSince(*until, now); err != nil {
				return e.usagef("--until: %v", err)
			}
		}
		if !q.Since.Before(q.Until) {
			return e.usagef("--since %s is not before --until %s", q.Since.Format(time.RFC3339), q.Until.Format(time.RFC3339))
		}
		switch *by {
		case usage.ByAccount, usage.ByUser, usage.ByType, usage.ByZone, usage.ByNode:
		default:
			return e.usagef("--by %q: want one of %s", *by, strings.Join(usage.Dimensions(), ", "))
		}
		switch *format {
		case "table", "csv", "json":
		default:
			return e.usagef("--format %q: want table, csv or json", *format)
		}
		db, err := e.openStore(ctx, controller.Migrations())
		if err != nil {
			return err
		}
		r, err := controller.ReportUsage(ctx, db, q, now)
		if err != nil {
			return err
		}
		if r.Horizon != nil {
			e.say("before %s the record keeps hourly totals: those hours count whole, by the hour they start in", r.Horizon.Format(time.RFC3339))
		}
		switch *format {
		case "json":
			return printJSON(e.stdout, r)
		case "csv":
			w := csv.NewWriter(e.stdout)
			heads, rows := usageTable(r, func(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) })
			w.Write(append([]string{"since", "until"}, heads...))
			for _, row := range rows {
				w.Write(append([]string{r.Since.Format(time.RFC3339), r.Until.Format(time.RFC3339)}, row...))
			}
			w.Flush()
			return w.Error()
		}
		e.say("usage from %s until %s by %s", r.Since.Format(time.RFC3339), r.Until.Format(time.RFC3339), r.By)
		heads, rows := usageTable(r, func(f float64) string { return strconv.FormatFloat(f, 'f', 2, 64) })
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, strings.ToUpper(strings.Join(heads, "\t")))
		for _, row := range rows {
			fmt.Fprintln(tw, strings.Join(row, "\t"))
		}
		return tw.Flush()
	}
}

// usageTable is a report's header and lines; num formats the hours.
func usageTable(r controller.UsageReport, num func(float64) string) ([]string, [][]string) {
	var heads []string
	switch r.By {
	case usage.ByAccount:
		heads = []string{"account"}
	case usage.ByUser:
		heads = []string{"account", "user"}
	case usage.ByType:
		heads = []string{"type"}
	case usage.ByZone:
		heads = []string{"zone"}
	case usage.ByNode:
		heads = []string{"node"}
	}
	heads = append(heads, "instance-hours", "core-hours", "silent-hours", "address-hours", "image-gib-hours")
	dash := func(s string) string {
		if s == "" {
			return "-"
		}
		return s
	}
	var rows [][]string
	for _, l := range r.Lines {
		var row []string
		switch r.By {
		case usage.ByAccount:
			row = []string{l.Account}
		case usage.ByUser:
			row = []string{l.Account, dash(l.User)}
		case usage.ByType:
			row = []string{dash(l.Type)}
		case usage.ByZone:
			row = []string{dash(l.Zone)}
		case usage.ByNode:
			row = []string{dash(l.Node)}
		}
		rows = append(rows, append(row, num(l.InstanceHours), num(l.CoreHours), num(l.SilentHours), num(l.AddressHours), num(l.ImageGiBHours)))
	}
	return heads, rows
}
