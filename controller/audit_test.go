package controller

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	sdk "github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/smithy-go"

	"ironbark/controller/ec2"
	"ironbark/internal/store"
	"ironbark/internal/store/storetest"
)

// Every registered action carries an audit decision, and the decision
// holds when the action is called: an audited action leaves exactly one
// entry (whether it worked or was refused), a read-only one none. A new
// action registered without a decision fails here.
func TestEveryActionHasAnAuditDecision(t *testing.T) {
	db := storetest.SQLite(t, Migrations())
	e := newTestEnv(t, db)
	ctx := context.Background()
	tables := map[string]map[string]actionSpec{"ec2": e.cloud.actions, "sts": e.cloud.stsActions, "iam": e.cloud.iamActions}
	for svc, table := range tables {
		for name, a := range table {
			t.Run(svc+"/"+name, func(t *testing.T) {
				switch a.audit {
				case readOnly, audited:
				default:
					t.Fatalf("%s has no audit decision: mark it readOnly or audited in its action table", name)
				}
				if verb := leadingVerb(name); (verb == "Describe" || verb == "Get" || verb == "List") != (a.audit == readOnly) {
					t.Errorf("%s is %v: a Describe/Get/List action is read-only, any other audited", name, a.audit)
				}
				before := countAudit(t, db)
				r := &ec2.Request{Action: name, Version: "2016-11-15", Params: map[string][]string{},
					Principal: ec2.Principal{AccountID: e.alice.ID, AccessKey: e.alice.AccessKey},
					RequestID: "req-" + name, SourceIP: "192.0.2.7"}
				switch svc {
				case "sts":
					r.Service, r.Version = "sts", ec2.STSVersion
				case "iam":
					r.Service, r.Version = "iam", ec2.IAMVersion
				}
				_, callErr := e.cloud.ServeEC2(ctx, r)
				got := countAudit(t, db) - before
				want := 0
				if a.audit == audited {
					want = 1
				}
				if got != want {
					t.Fatalf("%s (%v, call error %v) left %d audit entries, want %d", name, a.audit, callErr, got, want)
				}
			})
		}
	}
}

func leadingVerb(action string) string {
	for i := 1; i < len(action); i++ {
		if action[i] >= 'A' && action[i] <= 'Z' {
			return action[:i]
		}
	}
	return action
}

func countAudit(t *testing.T, db *store.DB) int {
	t.Helper()
	var n int
	if err := db.QueryRow(context.Background(), `SELECT COUNT(*) FROM audit_log`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// Real calls through aws-sdk-go-v2 leave entries naming the account, its
// key, the action, the resources, the client's address and the result;
// a refused call records EC2's error code; reads leave nothing.
func TestAuditSDKCalls(t *testing.T) {
	storetest.Each(t, Migrations(), func(t *testing.T, db *store.DB) {
		e := newTestEnv(t, db)
		ctx := context.Background()
		start := time.Now().Add(-time.Second)
		c := e.client(e.alice)
		sg := must[*sdk.CreateSecurityGroupOutput](t)(c.CreateSecurityGroup(ctx, &sdk.CreateSecurityGroupInput{
			GroupName: aws.String("web"), Description: aws.String("web servers")}))
		must[*sdk.DescribeSecurityGroupsOutput](t)(c.DescribeSecurityGroups(ctx, &sdk.DescribeSecurityGroupsInput{}))
		_, err := c.TerminateInstances(ctx, &sdk.TerminateInstancesInput{InstanceIds: []string{"i-0123456789abcdef0"}})
		wantCode(t, err, "InvalidInstanceID.NotFound")
		must[*sdk.CreateKeyPairOutput](t)(e.client(e.bob).CreateKeyPair(ctx, &sdk.CreateKeyPairInput{KeyName: aws.String("bobs")}))

		got, err := AuditLog(ctx, db, AuditQuery{Since: start, Account: "alice"})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 2 {
			t.Fatalf("alice's entries: %+v, want CreateSecurityGroup and TerminateInstances only", got)
		}
		create, term := got[0], got[1]
		for _, en := range got {
			if en.Account != "alice" || en.AccountID != e.alice.ID || en.AccessKey != e.alice.AccessKey ||
				en.Source != "127.0.0.1" || en.User != "" || en.RequestID == "" || en.Time.Before(start) {
				t.Errorf("entry %+v: want alice's, from 127.0.0.1, with a request id", en)
			}
		}
		if create.Action != "CreateSecurityGroup" || create.Result != "ok" ||
			!slices.Contains(create.Resources, aws.ToString(sg.GroupId)) || !slices.Contains(create.Resources, "web") {
			t.Errorf("create entry %+v: want CreateSecurityGroup ok naming %s and web", create, aws.ToString(sg.GroupId))
		}
		if term.Action != "TerminateInstances" || term.Result != "InvalidInstanceID.NotFound" ||
			!slices.Equal(term.Resources, []string{"i-0123456789abcdef0"}) {
			t.Errorf("terminate entry %+v: want the refusal's code and the instance id", term)
		}
		byAction, err := AuditLog(ctx, db, AuditQuery{Action: "CreateKeyPair"})
		if err != nil {
			t.Fatal(err)
		}
		if len(byAction) != 1 || byAction[0].Account != "bob" || !slices.Contains(byAction[0].Resources, "bobs") {
			t.Errorf("CreateKeyPair entries %+v: want bob's one naming bobs", byAction)
		}
		// A refused launch, whose handler answers a typed nil beside the
		// error, is recorded with the code the client saw.
		_, err = c.RunInstances(ctx, &sdk.RunInstancesInput{ImageId: aws.String(e.image), MinCount: aws.Int32(100), MaxCount: aws.Int32(100)})
		var ae smithy.APIError
		if !errors.As(err, &ae) {
			t.Fatalf("100 instances on 3 nodes: %v", err)
		}
		runs, err := AuditLog(ctx, db, AuditQuery{Action: "RunInstances"})
		if err != nil {
			t.Fatal(err)
		}
		if len(runs) != 1 || runs[0].Result != ae.ErrorCode() || !slices.Contains(runs[0].Resources, e.image) {
			t.Errorf("RunInstances entries %+v: want one refused with %s naming %s", runs, ae.ErrorCode(), e.image)
		}
		if later, err := AuditLog(ctx, db, AuditQuery{Since: time.Now().Add(time.Hour)}); err != nil || len(later) != 0 {
			t.Errorf("entries after now: %+v, %v", later, err)
		}
	})
}

// A CLI entry is named by AdminCLI and keeps its arguments and error.
func TestAuditAdminEntries(t *testing.T) {
	storetest.Each(t, Migrations(), func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		at := time.Date(2026, 11, 30, 6, 0, 0, 0, time.UTC)
		for _, en := range []AuditEntry{
			{Time: at, Account: AdminCLI, Action: "account create", Resources: []string{"carol"}, Source: "local", Result: "ok"},
			{Time: at.Add(time.Minute), Account: AdminCLI, Action: "node drain", Resources: []string{"nd-x"}, Source: "local", Result: "node nd-x: not found"},
		} {
			if err := RecordAudit(ctx, db, en); err != nil {
				t.Fatal(err)
			}
		}
		got, err := AuditLog(ctx, db, AuditQuery{Account: AdminCLI, Since: at.Add(time.Second)})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || got[0].Action != "node drain" || got[0].Account != AdminCLI || got[0].AccountID != "" ||
			!strings.Contains(got[0].Result, "not found") || !got[0].Time.Equal(at.Add(time.Minute)) {
			t.Fatalf("got %+v", got)
		}
	})
}

// Pruning deletes exactly the entries older than the cut; a shipper
// reading after a seq gets each entry once, in order.
func TestAuditPruneAndResume(t *testing.T) {
	storetest.Each(t, Migrations(), func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		t0 := time.Date(2026, 11, 2, 8, 0, 0, 0, time.UTC)
		for i := range 25 {
			if err := RecordAudit(ctx, db, AuditEntry{Time: t0.Add(time.Duration(i) * time.Hour), Account: AdminCLI,
				Action: "quota set", Resources: []string{fmt.Sprint(i)}, Source: "local", Result: "ok"}); err != nil {
				t.Fatal(err)
			}
		}
		var shipped []string
		var after int64
		for {
			batch := must[[]AuditEntry](t)(AuditLog(ctx, db, AuditQuery{After: after, Limit: 10}))
			if len(batch) == 0 {
				break
			}
			for _, e := range batch {
				shipped = append(shipped, e.Resources[0])
				after = e.Seq
			}
		}
		if len(shipped) != 25 || shipped[0] != "0" || shipped[24] != "24" {
			t.Fatalf("shipped %v", shipped)
		}
		n, err := PruneAudit(ctx, db, t0.Add(10*time.Hour))
		if err != nil || n != 10 {
			t.Fatalf("pruned %d (%v), want 10", n, err)
		}
		left := must[[]AuditEntry](t)(AuditLog(ctx, db, AuditQuery{}))
		if len(left) != 15 || left[0].Resources[0] != "10" {
			t.Fatalf("left %d entries from %v", len(left), left[0].Resources)
		}
		if n, err := PruneAudit(ctx, db, t0.Add(10*time.Hour)); err != nil || n != 0 {
			t.Fatalf("pruning again: %d %v", n, err)
		}
	})
}
