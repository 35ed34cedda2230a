package main

import (
	"context"
	"flag"
	"strconv"

	"ironbark/controller"
)

// Per-account quotas (controller/quotas.go).

func quotaSet(fs *flag.FlagSet) runFunc {
	vals := map[string]*string{}
	for _, kind := range controller.QuotaKinds() {
		vals[kind] = fs.String(kind, "", "limit on "+kind+": a number, or 'unlimited'")
	}
	return func(ctx context.Context, e *env) error {
		limits := map[string]*int64{}
		for kind, v := range vals {
			switch *v {
			case "":
			case "unlimited":
				limits[kind] = nil
			default:
				n, err := strconv.ParseInt(*v, 10, 64)
				if err != nil || n < 0 {
					return e.usagef("--%s %q: want a number >= 0 or 'unlimited'", kind, *v)
				}
				limits[kind] = &n
			}
		}
		if len(limits) == 0 {
			return e.usagef("nothing to set: give at least one of --%s ...", controller.QuotaInstances)
		}
		db, err := e.openStore(ctx, controller.Migrations())
		if err != nil {
			return err
		}
		if err := controller.SetQuota(ctx, db, e.args[0], limits); err != nil {
			return err
		}
		e.say("quota: %s updated", e.args[0])
		return nil
	}
}

// quotaRow is one kind of an account's quota; a null limit is unlimited.
type quotaRow struct {
	Account  string `json:"account"`
	Resource string `json:"resource"`
	Limit    *int64 `json:"limit"`
	Used     int64  `json:"used"`
}

func (r quotaRow) cells() []string {
	limit := "unlimited"
	if r.Limit != nil {
		limit = strconv.FormatInt(*r.Limit, 10)
	}
	return []string{r.Account, r.Resource, limit, strconv.FormatInt(r.Used, 10)}
}

func quotaList(fs *flag.FlagSet) runFunc {
	return func(ctx context.Context, e *env) error {
		db, err := e.openStore(ctx, controller.Migrations())
		if err != nil {
			return err
		}
		account := ""
		if len(e.args) > 0 {
			account = e.args[0]
		}
		qs, err := controller.ListQuotas(ctx, db, account)
		if err != nil {
			return err
		}
		var rows []quotaRow
		for _, q := range qs {
			for _, kind := range controller.QuotaKinds() {
				r := quotaRow{Account: q.Account, Resource: kind, Used: q.Used[kind]}
				if n, ok := q.Limits[kind]; ok {
					r.Limit = &n
				}
				rows = append(rows, r)
			}
		}
		return printList(e, []string{"ACCOUNT", "RESOURCE", "LIMIT", "USED"}, rows)
	}
}
