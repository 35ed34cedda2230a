package controller

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	sdk "github.com/aws/aws-sdk-go-v2/service/ec2"

	"ironbark/internal/store"
	"ironbark/internal/store/storetest"
)

// A user signs with its own keys, acts on its account's resources (and
// sees no more than the account), is named by STS and in the audit log,
// and goes away with its keys.
func TestUsers(t *testing.T) {
	storetest.Each(t, Migrations(), func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		e := newTestEnv(t, db)
		dir := t.TempDir()
		dev := must[Account](t)(CreateUser(ctx, db, "alice", "dev", false))
		if dev.ID != e.alice.ID || dev.User != "dev" || dev.Admin {
			t.Fatalf("user account = %+v", dev)
		}
		if _, err := CreateUser(ctx, db, "alice", "dev", true); !errors.Is(err, ErrUserExists) {
			t.Fatalf("second dev: %v, want ErrUserExists", err)
		}
		for _, bad := range []string{"", "..", "a/b", "x y", strings.Repeat("a", 65)} {
			if _, err := CreateUser(ctx, db, "alice", bad, false); err == nil {
				t.Errorf("user name %q accepted", bad)
			}
		}
		if _, err := CreateUser(ctx, db, "nobody", "dev", false); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("user of a missing account: %v", err)
		}

		// The account's instances are the user's to see, and the user's
		// launches are the account's; bob's stay bob's.
		mine := e.run(e.client(e.alice), 1, "")
		theirs := e.run(e.client(dev), 1, "")
		e.run(e.client(e.bob), 1, "")
		out := must[*sdk.DescribeInstancesOutput](t)(e.client(dev).DescribeInstances(ctx, &sdk.DescribeInstancesInput{}))
		if got := len(instanceIDs(out.Reservations)); got != 2 {
			t.Fatalf("dev sees %d instances, want alice's 2", got)
		}
		var who string
		if err := db.QueryRow(ctx, `SELECT user_name FROM instances WHERE id = ?`, *theirs.Instances[0].InstanceId).Scan(&who); err != nil || who != "dev" {
			t.Fatalf("dev's instance launched by %q (%v)", who, err)
		}
		if err := db.QueryRow(ctx, `SELECT user_name FROM instances WHERE id = ?`, *mine.Instances[0].InstanceId).Scan(&who); err != nil || who != "" {
			t.Fatalf("alice's instance launched by %q (%v)", who, err)
		}

		// STS names the user as IAM does.
		arn := regexp.MustCompile(`<Arn>([^<]*)</Arn>\s*<UserId>([^<]*)</UserId>`)
		_, body := e.postTo("/", "sts", dev, "Version=2011-06-15&Action=GetCallerIdentity")
		m := arn.FindStringSubmatch(body)
		if m == nil || m[1] != "arn:aws:iam::"+e.alice.ID+":user/dev" || !regexp.MustCompile(`^AIDA[A-Z2-7]{17}$`).MatchString(m[2]) {
			t.Fatalf("dev's identity: %s", body)
		}
		_, body = e.postTo("/", "sts", e.alice, "Version=2011-06-15&Action=GetCallerIdentity")
		if m := arn.FindStringSubmatch(body); m == nil || m[1] != "arn:aws:iam::"+e.alice.ID+":root" || m[2] != e.alice.ID {
			t.Fatalf("alice's identity: %s", body)
		}

		// The audit log names who launched.
		entries := must[[]AuditEntry](t)(AuditLog(ctx, db, AuditQuery{Account: "alice", Action: "RunInstances"}))
		var users []string
		for _, en := range entries {
			users = append(users, en.User)
		}
		if strings.Join(users, ",") != ",dev" {
			t.Fatalf("RunInstances entries name users %q, want alice's own then dev", users)
		}

		// Keys: two per user, apart from the account's own.
		dev2 := must[Account](t)(CreateAccessKey(ctx, db, "alice", "dev"))
		if _, err := CreateAccessKey(ctx, db, "alice", "dev"); !errors.Is(err, ErrTooManyKeys) {
			t.Fatalf("third key of dev: %v", err)
		}
		if _, err := CreateAccessKey(ctx, db, "alice", "nosuch"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("key of a missing user: %v", err)
		}
		own := must[Account](t)(CreateAccessKey(ctx, db, "alice", ""))
		if own.User != "" {
			t.Fatal(own)
		}
		keys := must[[]AccessKey](t)(AccessKeys(ctx, db, "alice"))
		byUser := map[string]int{}
		for _, k := range keys {
			byUser[k.User]++
		}
		if byUser[""] != 2 || byUser["dev"] != 2 {
			t.Fatalf("keys by user: %v", byUser)
		}
		// The account's credentials stay its own key's, not a user's.
		if a := must[Account](t)(LookupAccount(ctx, db, "alice")); a.AccessKey != e.alice.AccessKey && a.AccessKey != own.AccessKey {
			t.Fatalf("alice's credentials key = %s, want one of her own (%s, %s)", a.AccessKey, e.alice.AccessKey, own.AccessKey)
		}
		userDir := must[string](t)(WriteUserCredentials(dir, dev, "http://test/", "ironbark", nil))
		rc := must[[]byte](t)(os.ReadFile(filepath.Join(userDir, "eucarc")))
		if !strings.Contains(string(rc), "user dev of account alice") || !strings.Contains(string(rc), dev.AccessKey) {
			t.Fatalf("dev's eucarc:\n%s", rc)
		}
		users2 := must[[]User](t)(Users(ctx, db, "alice"))
		if len(users2) != 1 || users2[0].Name != "dev" || users2[0].Keys != 2 || users2[0].Admin {
			t.Fatalf("users = %+v", users2)
		}

		// Delete: refused while a key is active; then the keys go too.
		if _, err := DeleteUser(ctx, db, dir, "alice", "dev", false); !errors.Is(err, ErrUserHasActiveKeys) {
			t.Fatalf("delete with active keys: %v", err)
		}
		e.mustPost(dev, "Version=2016-11-15&Action=DescribeRegions")
		for _, k := range []string{dev.AccessKey, dev2.AccessKey} {
			if err := SetAccessKeyActive(ctx, db, "alice", k, false); err != nil {
				t.Fatal(err)
			}
		}
		gone := must[[]string](t)(DeleteUser(ctx, db, dir, "alice", "dev", false))
		if len(gone) != 2 {
			t.Fatalf("deleted keys %v", gone)
		}
		if _, err := os.Stat(userDir); !os.IsNotExist(err) {
			t.Fatalf("dev's credentials dir stays: %v", err)
		}
		if status, _ := e.post(dev, "Version=2016-11-15&Action=DescribeRegions"); status != 401 {
			t.Fatalf("a deleted user's key: %d", status)
		}
		if _, err := DeleteUser(ctx, db, dir, "alice", "dev", false); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("delete again: %v", err)
		}
		// The account and its instances carry on.
		e.mustPost(e.alice, "Version=2016-11-15&Action=DescribeInstances")
		var n int
		if err := db.QueryRow(ctx, `SELECT COUNT(*) FROM instances WHERE account_id = ?`, e.alice.ID).Scan(&n); err != nil || n != 2 {
			t.Fatalf("alice holds %d instances (%v)", n, err)
		}
		// --force deletes a user whose key is active.
		must[Account](t)(CreateUser(ctx, db, "alice", "temp", false))
		if _, err := DeleteUser(ctx, db, dir, "alice", "temp", true); err != nil {
			t.Fatal(err)
		}
	})
}

// Only the admin account's own keys and its admin users have the cloud
// administrator's view; a plain user of the admin account sees that
// account alone.
func TestAdminAccountUsers(t *testing.T) {
	db := storetest.SQLite(t, Migrations())
	ctx := context.Background()
	e := newTestEnv(t, db)
	e.run(e.client(e.bob), 1, "")
	ops := must[Account](t)(CreateUser(ctx, db, AdminAccount, "ops", true))
	helper := must[Account](t)(CreateUser(ctx, db, AdminAccount, "helper", false))
	count := func(a Account) int {
		out := must[*sdk.DescribeInstancesOutput](t)(e.client(a).DescribeInstances(ctx, &sdk.DescribeInstancesInput{}))
		return len(instanceIDs(out.Reservations))
	}
	if got := count(ops); got != 1 {
		t.Errorf("the admin user sees %d instances, want bob's 1", got)
	}
	if got := count(helper); got != 0 {
		t.Errorf("a plain user of the admin account sees %d instances, want none", got)
	}
	if got := count(e.admin); got != 1 {
		t.Errorf("the admin account sees %d instances, want 1", got)
	}
}
