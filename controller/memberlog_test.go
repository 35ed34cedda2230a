package controller

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	sdk "github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"ironbark/internal/nodeapi"
	"ironbark/internal/store"
	"ironbark/internal/store/storetest"
)

// TestMemberLog: each controller's copy of the security group membership,
// kept from the store's change log, gives the same member lists, versions
// and nodes as the instances table, on two controllers over one store,
// after launches, terminations (asked and reported), a rolled-back
// change, a restart, and a log trimmed past a controller that fell behind.
func TestMemberLog(t *testing.T) {
	storetest.Each(t, Migrations(), func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		e := newTestEnv(t, db)
		second := func() *Cloud {
			c, err := New(Config{Region: "ironbark", Endpoint: "http://test/"}, db, nil, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			return c
		}
		b := second()
		c := e.client(e.alice)
		group := func(name string) string {
			return aws.ToString(must[*sdk.CreateSecurityGroupOutput](t)(c.CreateSecurityGroup(ctx, &sdk.CreateSecurityGroupInput{
				GroupName: aws.String(name), Description: aws.String(name)})).GroupId)
		}
		web, app := group("web"), group("app")
		if _, err := c.AuthorizeSecurityGroupIngress(ctx, &sdk.AuthorizeSecurityGroupIngressInput{GroupId: aws.String(web),
			IpPermissions: []types.IpPermission{{IpProtocol: aws.String("tcp"), FromPort: aws.Int32(80), ToPort: aws.Int32(80),
				UserIdGroupPairs: []types.UserIdGroupPair{{GroupId: aws.String(app)}}}}}); err != nil {
			t.Fatal(err)
		}
		launch := func(n int32, gs ...string) []string {
			return runIDs(must[*sdk.RunInstancesOutput](t)(c.RunInstances(ctx, &sdk.RunInstancesInput{ImageId: aws.String(e.image),
				MinCount: aws.Int32(n), MaxCount: aws.Int32(n), InstanceType: "m1.small", SecurityGroupIds: gs})))
		}
		check := func(step string, clouds ...*Cloud) {
			t.Helper()
			for i, cl := range clouds {
				if err := cl.memberLog.sync(ctx, cl, time.Now()); err != nil {
					t.Fatalf("%s: controller %d: sync: %v", step, i, err)
				}
				for _, g := range []string{web, app} {
					wantList, wantNodes := membersFromTable(t, db, g)
					list, version := cl.memberLog.members(g)
					if !slices.Equal(list, wantList) || version != nodeapi.MembersVersion(wantList) {
						t.Fatalf("%s: controller %d: %s members %v (%s), the table says %v (%s)", step, i, g, list, version,
							wantList, nodeapi.MembersVersion(wantList))
					}
					if got := cl.memberLog.nodesOf([]string{g}); !slices.Equal(got, wantNodes) {
						t.Fatalf("%s: controller %d: nodes of %s %v, the table says %v", step, i, g, got, wantNodes)
					}
				}
			}
		}
		apps := launch(3, app)
		webs := launch(1, web, app)
		check("launched", e.cloud, b)
		if l, _ := b.memberLog.counts(); l != 1 {
			t.Fatalf("controller b loaded %d times, want once", l)
		}
		_ = webs

		// Asked to terminate: the instance leaves its groups' lists at
		// once, and its node stops holding it when it reports terminated.
		if _, err := c.TerminateInstances(ctx, &sdk.TerminateInstancesInput{InstanceIds: apps[:1]}); err != nil {
			t.Fatal(err)
		}
		check("terminate asked", e.cloud, b)
		e.observe(t, apps[:1], nodeapi.StateTerminated)
		check("terminate reported", e.cloud, b)
		// A guest that ended by itself (reported terminated, never asked).
		e.observe(t, apps[1:2], nodeapi.StateTerminated)
		check("ended by itself", e.cloud, b)

		// A change rolled back leaves (on PostgreSQL) a gap in the log's
		// sequence: no reload, and nothing of it shows.
		errUndo := errors.New("undo")
		err := db.InTx(ctx, func(tx *store.Tx) error {
			if _, err := tx.Exec(ctx, `UPDATE instances SET desired = 'terminated' WHERE id = ?`, apps[2]); err != nil {
				return err
			}
			return errUndo
		})
		if !errors.Is(err, errUndo) {
			t.Fatalf("rolled-back change: %v", err)
		}
		launch(2, app)
		check("after a rollback", e.cloud, b)
		if l, rows := b.memberLog.counts(); l != 1 || rows == 0 {
			t.Fatalf("controller b: %d loads, %d log rows applied; want 1 load and the rows", l, rows)
		}

		// A restarted controller loads the membership anew and names
		// every list with the same version.
		check("restarted", second())

		// The log trimmed past rows a controller has not read: it loads
		// everything again rather than miss them.
		launch(2, web)
		if _, err := db.Exec(ctx, `UPDATE member_changes SET at = 0`); err != nil {
			t.Fatal(err)
		}
		if _, err := e.cloud.Purge(ctx); err != nil {
			t.Fatal(err)
		}
		var left int
		if err := db.QueryRow(ctx, `SELECT COUNT(*) FROM member_changes`).Scan(&left); err != nil || left != 1 {
			t.Fatalf("after the trim the log holds %d rows (%v), want the newest only", left, err)
		}
		check("trimmed", b)
		if l, _ := b.memberLog.counts(); l != 2 {
			t.Fatalf("controller b behind a trimmed log loaded %d times, want a second load", l)
		}
		// And moves on from the log again.
		launch(1, app)
		check("after the reload", e.cloud, b)
		if l, _ := b.memberLog.counts(); l != 2 {
			t.Fatalf("controller b loaded %d times after catching up, want 2", l)
		}
	})
}

// membersFromTable is a group's member addresses (address order) and the
// nodes holding its instances, read from the instances table: the truth
// the member log must agree with.
func membersFromTable(t *testing.T, db *store.DB, group string) (members, nodes []string) {
	t.Helper()
	rows, err := db.Query(context.Background(), `SELECT i.private_ip, i.node_id, i.state, i.desired, r.groups
		FROM instances i JOIN reservations r ON r.id = i.reservation_id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var as []netip.Addr
	for rows.Next() {
		var ip, node, state, desired, js string
		if err := rows.Scan(&ip, &node, &state, &desired, &js); err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(groupIDs(js), group) || state == nodeapi.StateTerminated {
			continue
		}
		if node != "" {
			nodes = append(nodes, node)
		}
		if desired != nodeapi.StateTerminated && ip != "" {
			as = append(as, netip.MustParseAddr(ip))
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(as, func(a, b netip.Addr) int { return a.Compare(b) })
	members = []string{}
	for _, a := range slices.Compact(as) {
		members = append(members, a.String())
	}
	slices.Sort(nodes)
	return members, slices.Compact(nodes)
}
