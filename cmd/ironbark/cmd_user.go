package main

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"time"

	"ironbark/controller"
)

// Users inside an account (controller/users.go does the work).

func userCreate(fs *flag.FlagSet) runFunc {
	admin := fs.Bool("admin", false, "make an account admin (a plain user otherwise)")
	return func(ctx context.Context, e *env) error {
		endpoint, region, caPEM, err := credentialSettings(e)
		if err != nil {
			return err
		}
		db, err := e.openStore(ctx, controller.Migrations())
		if err != nil {
			return err
		}
		a, err := controller.CreateUser(ctx, db, e.args[0], e.args[1], *admin)
		if err != nil {
			return err
		}
		dir, err := controller.WriteUserCredentials(e.dataDir, a, endpoint, region, caPEM)
		if err != nil {
			return err
		}
		kind := "plain user"
		if *admin {
			kind = "account admin"
		}
		e.say("user %s (%s) made in account %s with access key %s", a.User, kind, a.Name, a.AccessKey)
		fmt.Fprintln(e.stdout, dir)
		return nil
	}
}

// userRow is one user in `user list`.
type userRow struct {
	Name    string    `json:"name"`
	ID      string    `json:"userId"`
	Role    string    `json:"role"` // "admin" or "user"
	Keys    int       `json:"accessKeys"`
	Created time.Time `json:"created"`
}

func (r userRow) cells() []string {
	return []string{r.Name, r.ID, r.Role, fmt.Sprint(r.Keys), r.Created.Format(time.RFC3339)}
}

func userList(fs *flag.FlagSet) runFunc {
	return func(ctx context.Context, e *env) error {
		db, err := e.openStore(ctx, controller.Migrations())
		if err != nil {
			return err
		}
		users, err := controller.Users(ctx, db, e.args[0])
		if err != nil {
			return err
		}
		rows := make([]userRow, len(users))
		for i, u := range users {
			rows[i] = userRow{Name: u.Name, ID: u.ID, Role: "user", Keys: u.Keys, Created: u.Created}
			if u.Admin {
				rows[i].Role = "admin"
			}
		}
		return printList(e, []string{"USER", "USER ID", "ROLE", "KEYS", "CREATED"}, rows)
	}
}

func userDelete(fs *flag.FlagSet) runFunc {
	force := fs.Bool("force", false, "delete even while one of the user's keys is active")
	return func(ctx context.Context, e *env) error {
		db, err := e.openStore(ctx, controller.Migrations())
		if err != nil {
			return err
		}
		keys, err := controller.DeleteUser(ctx, db, e.dataDir, e.args[0], e.args[1], *force)
		if err != nil {
			return err
		}
		e.say("user %s of account %s deleted with its access keys: %s", e.args[1], e.args[0], strings.Join(keys, ", "))
		return nil
	}
}
