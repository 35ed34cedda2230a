package controller

import (
	"context"
	"regexp"
	"strings"
	"testing"

	"ironbark/controller/ec2"
	"ironbark/internal/store"
	"ironbark/internal/store/storetest"
)

// The account and its admin users manage users and keys over IAM's
// Query API; a plain user may only read itself; another account sees
// none of them.
func TestIAMUsersAndKeys(t *testing.T) {
	storetest.Each(t, Migrations(), func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		e := newTestEnv(t, db)
		iam := func(a Account, body string) (int, string) {
			t.Helper()
			return e.postTo("/", "iam", a, "Version=2010-05-08&"+body)
		}
		want := func(a Account, body string, status int, has ...string) string {
			t.Helper()
			got, out := iam(a, body)
			if got != status {
				t.Fatalf("%s: %d %s, want %d", body, got, out, status)
			}
			for _, h := range has {
				if !strings.Contains(out, h) {
					t.Fatalf("%s: %s lacks %s", body, out, h)
				}
			}
			return out
		}
		want(e.alice, "Action=CreateUser&UserName=dev", 200, "<UserName>dev</UserName>", "<Arn>arn:aws:iam::"+e.alice.ID+":user/dev</Arn>",
			`xmlns="`+ec2.IAMNamespace+`"`, "<RequestId>")
		want(e.alice, "Action=CreateUser&UserName=dev", 409, "<Code>EntityAlreadyExists</Code>")
		want(e.alice, "Action=CreateUser&UserName=a%2Fb", 400, "<Code>ValidationError</Code>")
		out := want(e.alice, "Action=CreateAccessKey&UserName=dev", 200, "<Status>Active</Status>", "<UserName>dev</UserName>")
		key := regexp.MustCompile(`<AccessKeyId>([^<]+)</AccessKeyId>`).FindStringSubmatch(out)
		secret := regexp.MustCompile(`<SecretAccessKey>([^<]+)</SecretAccessKey>`).FindStringSubmatch(out)
		if key == nil || secret == nil {
			t.Fatalf("CreateAccessKey: %s", out)
		}
		dev := Account{ID: e.alice.ID, Name: "alice", User: "dev", AccessKey: key[1], SecretKey: secret[1]}
		e.mustPost(dev, "Version=2016-11-15&Action=DescribeInstances")

		// A plain user reads itself and nothing else.
		want(dev, "Action=GetUser", 200, "<UserName>dev</UserName>")
		want(dev, "Action=CreateUser&UserName=eve", 403, "<Code>AccessDenied</Code>", "user/dev")
		want(dev, "Action=ListUsers", 403, "<Code>AccessDenied</Code>")
		want(dev, "Action=UpdateAccessKey&UserName=dev&AccessKeyId="+dev.AccessKey+"&Status=Inactive", 403, "<Code>AccessDenied</Code>")
		// An admin user made on the frontend manages them.
		ops := must[Account](t)(CreateUser(ctx, db, "alice", "ops", true))
		want(ops, "Action=ListUsers", 200, "<member>", "<UserName>dev</UserName>", "<UserName>ops</UserName>", "<IsTruncated>false</IsTruncated>")
		want(ops, "Action=ListAccessKeys&UserName=dev", 200, "<AccessKeyId>"+dev.AccessKey+"</AccessKeyId>")
		// bob's account has no dev.
		want(e.bob, "Action=GetUser&UserName=dev", 404, "<Code>NoSuchEntity</Code>")
		want(e.bob, "Action=UpdateAccessKey&UserName=dev&AccessKeyId="+dev.AccessKey+"&Status=Inactive", 404, "<Code>NoSuchEntity</Code>")
		want(e.alice, "Action=GetUser", 200, "<Arn>arn:aws:iam::"+e.alice.ID+":root</Arn>")

		// Delete: refused while a key is active, then done.
		want(ops, "Action=DeleteUser&UserName=dev", 409, "<Code>DeleteConflict</Code>")
		want(ops, "Action=UpdateAccessKey&UserName=dev&AccessKeyId="+dev.AccessKey+"&Status=Inactive", 200)
		if status, _ := e.post(dev, "Version=2016-11-15&Action=DescribeInstances"); status != 401 {
			t.Fatalf("a deactivated user key: %d", status)
		}
		want(ops, "Action=DeleteUser&UserName=dev", 200)
		want(ops, "Action=GetUser&UserName=dev", 404, "<Code>NoSuchEntity</Code>")

		// Keys of the account itself, and their limit.
		out = want(e.alice, "Action=CreateAccessKey", 200, "<Status>Active</Status>")
		own := regexp.MustCompile(`<AccessKeyId>([^<]+)</AccessKeyId>`).FindStringSubmatch(out)[1]
		want(e.alice, "Action=CreateAccessKey", 409, "<Code>LimitExceeded</Code>")
		want(e.alice, "Action=DeleteAccessKey&AccessKeyId="+own, 200)

		entries := must[[]AuditEntry](t)(AuditLog(ctx, db, AuditQuery{Account: "alice", Action: "CreateUser"}))
		// made, refused as a duplicate, a bad name, and by a plain user
		if len(entries) != 4 || entries[0].Result != "ok" || entries[0].Resources[0] != "dev" ||
			entries[1].Result != "EntityAlreadyExists" || entries[1].Resources[0] != "dev" || entries[3].User != "dev" || entries[3].Result != "AccessDenied" {
			t.Fatalf("CreateUser audit entries: %+v", entries)
		}
	})
}
