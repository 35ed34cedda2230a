package main

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"time"

	"ironbark/controller"
	"ironbark/internal/pki"
)

// Access keys and account switches (controller/accesskeys.go does the
// work).

func keyCreate(fs *flag.FlagSet) runFunc {
	user := fs.String("user", "", "make the key for this user of the account (the account's own key otherwise)")
	return func(ctx context.Context, e *env) error {
		endpoint, region, caPEM, err := credentialSettings(e)
		if err != nil {
			return err
		}
		db, err := e.openStore(ctx, controller.Migrations())
		if err != nil {
			return err
		}
		a, err := controller.CreateAccessKey(ctx, db, e.args[0], *user)
		if err != nil {
			return err
		}
		dir, err := controller.WriteKeyCredentials(e.dataDir, a, endpoint, region, caPEM)
		if err != nil {
			return err
		}
		if a.User != "" {
			e.say("access key %s made for user %s of account %s", a.AccessKey, a.User, a.Name)
		} else {
			e.say("access key %s made for account %s", a.AccessKey, a.Name)
		}
		fmt.Fprintln(e.stdout, dir)
		return nil
	}
}

// credentialSettings is what a credentials dir names: the EC2 endpoint,
// the region, and the cloud's CA certificate when the endpoint is HTTPS.
func credentialSettings(e *env) (endpoint, region string, caPEM []byte, err error) {
	settings, err := controller.LoadSettings(e.dataDir)
	if err != nil {
		return "", "", nil, err
	}
	s := settings.Resolved()
	if strings.HasPrefix(s.Endpoint, "https:") {
		ca, err := pki.LoadOrCreateCA(e.dir().PKI())
		if err != nil {
			return "", "", nil, err
		}
		caPEM = ca.CertPEM()
	}
	return s.Endpoint, s.Region, caPEM, nil
}

// keyRow is one access key in `key list`; the secret is never listed.
type keyRow struct {
	AccessKey string     `json:"accessKeyId"`
	User      string     `json:"user"`   // "" for the account's own keys
	Status    string     `json:"status"` // Active or Inactive, as IAM says
	Created   time.Time  `json:"created"`
	LastUsed  *time.Time `json:"lastUsed"` // null: never used
}

func (r keyRow) cells() []string {
	used := "never"
	if r.LastUsed != nil {
		used = r.LastUsed.Format(time.RFC3339)
	}
	user := r.User
	if user == "" {
		user = "-"
	}
	return []string{r.AccessKey, user, r.Status, r.Created.Format(time.RFC3339), used}
}

func keyList(fs *flag.FlagSet) runFunc {
	return func(ctx context.Context, e *env) error {
		db, err := e.openStore(ctx, controller.Migrations())
		if err != nil {
			return err
		}
		keys, err := controller.AccessKeys(ctx, db, e.args[0])
		if err != nil {
			return err
		}
		if disabled, err := controller.AccountDisabled(ctx, db, e.args[0]); err != nil {
			return err
		} else if disabled {
			e.say("account %s is disabled: none of its keys signs calls ('ironbark account enable %s')", e.args[0], e.args[0])
		}
		var rows []keyRow
		for _, k := range keys {
			r := keyRow{AccessKey: k.AccessKey, User: k.User, Status: "Inactive", Created: k.Created}
			if k.Active {
				r.Status = "Active"
			}
			if !k.LastUsed.IsZero() {
				used := k.LastUsed
				r.LastUsed = &used
			}
			rows = append(rows, r)
		}
		return printList(e, []string{"ACCESS KEY", "USER", "STATUS", "CREATED", "LAST USED"}, rows)
	}
}

// keySetActive is `key activate` and `key deactivate`.
func keySetActive(active bool) func(fs *flag.FlagSet) runFunc {
	return func(fs *flag.FlagSet) runFunc {
		return func(ctx context.Context, e *env) error {
			db, err := e.openStore(ctx, controller.Migrations())
			if err != nil {
				return err
			}
			if err := controller.SetAccessKeyActive(ctx, db, e.args[0], e.args[1], active); err != nil {
				return err
			}
			if active {
				e.say("access key %s of account %s is active", e.args[1], e.args[0])
			} else {
				e.say("access key %s of account %s is deactivated: it signs nothing from now on", e.args[1], e.args[0])
			}
			return nil
		}
	}
}

func keyDelete(fs *flag.FlagSet) runFunc {
	return func(ctx context.Context, e *env) error {
		db, err := e.openStore(ctx, controller.Migrations())
		if err != nil {
			return err
		}
		if err := controller.DeleteAccessKey(ctx, db, e.dataDir, e.args[0], e.args[1]); err != nil {
			return err
		}
		e.say("access key %s of account %s deleted", e.args[1], e.args[0])
		return nil
	}
}

// accountSetDisabled is `account disable` and `account enable`.
func accountSetDisabled(disabled bool) func(fs *flag.FlagSet) runFunc {
	return func(fs *flag.FlagSet) runFunc {
		return func(ctx context.Context, e *env) error {
			db, err := e.openStore(ctx, controller.Migrations())
			if err != nil {
				return err
			}
			if err := controller.SetAccountDisabled(ctx, db, e.args[0], disabled); err != nil {
				return err
			}
			if disabled {
				e.say("account %s disabled: its keys sign nothing from now on; its instances keep running", e.args[0])
			} else {
				e.say("account %s enabled", e.args[0])
			}
			return nil
		}
	}
}
