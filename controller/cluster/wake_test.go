package cluster

import (
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	sdk "github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"ironbark/controller"
	"ironbark/controller/ec2"
	"ironbark/controller/ec2/ec2test"
	"ironbark/internal/nodeapi"
	"ironbark/internal/store"
	"ironbark/internal/store/storetest"
)

// controllerOn is one controller process's worth of parts on a shared
// database: its own connection pool, Cloud and Service, with the periodic
// loops and the wake-ups running.
type controllerOn struct {
	cloud *controller.Cloud
	svc   *Service
	ec2   *sdk.Client
	// dead: the controller tells nothing after its commits, as one
	// killed right after them would not.
	dead atomic.Bool
}

func startControllerOn(t *testing.T, url, keyFile string, admin controller.Account) *controllerOn {
	t.Helper()
	return startControllerIn(t, url, keyFile, admin, t.TempDir())
}

// startControllerIn is startControllerOn with the data directory given:
// controllers sharing one keep one CA, as a site's controllers do.
func startControllerIn(t *testing.T, url, keyFile string, admin controller.Account, dataDir string) *controllerOn {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	h, err := store.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	h.UseKeyFile(keyFile)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	c := &controllerOn{}
	c.cloud, err = controller.New(controller.Config{Region: "ironbark", Endpoint: "http://test/", PublicAddresses: []string{"10.99.0.0/28"},
		Notify: func(n string) {
			if !c.dead.Load() {
				c.svc.Notify(n)
			}
		},
		NotifySoon: func(n string) {
			if !c.dead.Load() {
				c.svc.NotifySoon(n)
			}
		},
		NotifyInTx: func(ctx context.Context, tx *store.Tx, nodes ...string) error {
			return c.svc.NotifyInTx(ctx, tx, nodes...)
		},
		NotifyGroupsInTx: func(ctx context.Context, tx *store.Tx, groups []string, members bool) error {
			return c.svc.NotifyGroupsInTx(ctx, tx, groups, members)
		},
	}, h, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	// Waits re-read the ledger only when told: a wake-up is the only way
	// a waiting request learns of a launch within its wait. SQLite does
	// not tell one controller of another's changes: each reads every
	// answer whole.
	c.svc, err = New(ctx, Config{DB: h, DataDir: dataDir, Ledger: c.cloud, Logger: log, DesiredPoll: time.Hour,
		ReadWhole: !h.CanNotify()})
	if err != nil {
		t.Fatal(err)
	}
	c.cloud.SetPlacer(c.svc.Placer())
	done := make(chan struct{})
	go func() { defer close(done); _ = c.svc.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	key, err := controller.TokenKey(ctx, h)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(ec2.NewServer(ec2.Config{Handler: c.cloud, Credentials: c.cloud, Logger: log, TokenKey: key}))
	t.Cleanup(srv.Close)
	c.ec2 = ec2test.Client(srv.URL, admin.AccessKey, admin.SecretKey)
	return c
}

// A node waiting on one controller for a change of its instances hears of
// a launch made through another controller on the same PostgreSQL at once
// (LISTEN/NOTIFY), not at the end of its wait: the answer to the waiting
// request itself carries the new instance. The wake-up is committed with
// the launch: it arrives even when the controller that launched tells
// nothing after its commit, as one killed right then would not.
func TestLongPollWakesAcrossControllers(t *testing.T) {
	for _, dies := range []bool{false, true} {
		name := "changing controller lives"
		if dies {
			name = "changing controller dies after its commits"
		}
		t.Run(name, func(t *testing.T) { testLongPollWakes(t, dies) })
	}
}

func testLongPollWakes(t *testing.T, dies bool) {
	db := storetest.Postgres(t, controller.Migrations())
	ctx := context.Background()
	admin, image := adminAndImage(t, db, "wake")
	a := startControllerOn(t, db.URL(), db.KeyFile(), admin)
	b := startControllerOn(t, db.URL(), db.KeyFile(), admin)
	if err := a.svc.AddCluster(ctx, "c1", "GREEDY"); err != nil {
		t.Fatal(err)
	}
	token, err := a.svc.NewToken(ctx, a.svc.CA(), "c1", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	node, enrolled := enrollNode(t, serve(t, a.svc), token)
	first, err := node.Instances(ctx, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	var id string
	// The request waits on controller a before the change is made
	// through controller b.
	b.dead.Store(dies)
	d := waitedAnswer(t, node, a.svc, enrolled.NodeID, first.ETag, func() {
		out, err := b.ec2.RunInstances(ctx, &sdk.RunInstancesInput{ImageId: aws.String(image),
			InstanceType: types.InstanceType("m1.small"), MinCount: aws.Int32(1), MaxCount: aws.Int32(1)})
		if err != nil {
			t.Fatal(err)
		}
		id = aws.ToString(out.Instances[0].InstanceId)
	})
	if len(d.Instances) != 1 || d.Instances[0].InstanceID != id {
		t.Fatalf("the waiting request on controller a answered %+v; want the launch of %s made through controller b", d.Instances, id)
	}
	// A termination wakes it the same way.
	d = waitedAnswer(t, node, a.svc, enrolled.NodeID, d.ETag, func() {
		if _, err := b.ec2.TerminateInstances(ctx, &sdk.TerminateInstancesInput{InstanceIds: []string{id}}); err != nil {
			t.Fatal(err)
		}
	})
	if len(d.Instances) != 1 || d.Instances[0].Desired != nodeapi.StateTerminated {
		t.Fatalf("the waiting request on controller a answered %+v after the termination of %s through controller b; want it desired terminated", d.Instances, id)
	}
}

// waitedAnswer starts the node's request for a change from etag, waits
// until it waits on svc, calls change, and returns the request's answer;
// it fails the test unless the answer comes within 20 s (the wait is 60).
func waitedAnswer(t *testing.T, node *nodeapi.Client, svc *Service, nodeID, etag string, change func()) nodeapi.Desired {
	t.Helper()
	got := make(chan nodeapi.Desired, 1)
	errc := make(chan error, 1)
	go func() {
		d, err := node.Instances(context.Background(), etag, 60*time.Second)
		if err != nil {
			errc <- err
			return
		}
		got <- d
	}()
	waitForPoll(svc, nodeID)
	change()
	select {
	case err := <-errc:
		t.Fatal(err)
	case <-time.After(20 * time.Second):
		t.Fatal("the waiting request on controller a was not woken by the change made through controller b")
	case d := <-got:
		return d
	}
	panic("unreachable")
}

// A node waiting on one controller hears of the security-group changes
// made through another on the same PostgreSQL, though that controller
// tells nothing after its commits (as one killed right then would not):
// a launch onto another node and a termination there change the member
// list of the group the node enforces, a rule change its rules, and an
// address associated with the node's instance its NAT. Each is published
// in its transaction (by the groups' IDs, or the node's), and the
// controller the node waits on finds and wakes it. On SQLite (one
// controller) the same changes made through the controller the node
// waits on wake it.
func TestGroupWakesAcrossControllers(t *testing.T) {
	storetest.Each(t, controller.Migrations(), func(t *testing.T, db *store.DB) {
		testGroupWakes(t, db, db.CanNotify())
	})
}

func testGroupWakes(t *testing.T, db *store.DB, other bool) {
	ctx := context.Background()
	admin, image := adminAndImage(t, db, "group-wake")
	dataDir := t.TempDir()
	a := startControllerIn(t, db.URL(), db.KeyFile(), admin, dataDir)
	b := a
	if other {
		b = startControllerIn(t, db.URL(), db.KeyFile(), admin, dataDir)
	}
	if err := a.svc.AddCluster(ctx, "c1", "GREEDY"); err != nil {
		t.Fatal(err)
	}
	token, err := a.svc.NewToken(ctx, a.svc.CA(), "c1", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	urlA := serve(t, a.svc)
	up := func(n nodeAt) *nodeapi.Client {
		t.Helper()
		c := n.client(t, urlA)
		if _, err := c.Heartbeat(ctx, nodeapi.HeartbeatRequest{Hostname: "host-" + n.id, Full: true,
			Capacity: nodeapi.Capacity{Cores: 16, MemoryMiB: 16384, DiskGiB: 500}}); err != nil {
			t.Fatal(err)
		}
		return c
	}
	launch := func(through *controllerOn) (id, ip string) {
		t.Helper()
		out, err := through.ec2.RunInstances(ctx, &sdk.RunInstancesInput{ImageId: aws.String(image),
			InstanceType: types.InstanceType("m1.small"), MinCount: aws.Int32(1), MaxCount: aws.Int32(1)})
		if err != nil {
			t.Fatal(err)
		}
		return aws.ToString(out.Instances[0].InstanceId), aws.ToString(out.Instances[0].PrivateIpAddress)
	}
	// The watched node runs the first instance, then is drained: the
	// second goes to the other node, and reaches the watched one only as
	// a member of the default group (its own peer).
	watched := enrollFor(t, urlA, token)
	node := up(watched)
	id1, ip1 := launch(a)
	if err := a.svc.SetDrained(ctx, watched.id, true); err != nil {
		t.Fatal(err)
	}
	token2, err := a.svc.NewToken(ctx, a.svc.CA(), "c1", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	up(enrollFor(t, urlA, token2))
	first, err := node.Instances(ctx, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := sameMembers(first, []string{ip1}); err != nil {
		t.Fatal(err)
	}

	b.dead.Store(other)
	var id2, ip2 string
	d := waitedAnswer(t, node, a.svc, watched.id, first.ETag, func() { id2, ip2 = launch(b) })
	if err := sameMembers(d, []string{ip1, ip2}); err != nil {
		t.Fatalf("the launch through b onto the other node: %v", err)
	}
	if err := sameSpecs(d, []string{id1}); err != nil {
		t.Fatal(err)
	}

	d = waitedAnswer(t, node, a.svc, watched.id, d.ETag, func() {
		if _, err := b.ec2.AuthorizeSecurityGroupIngress(ctx, &sdk.AuthorizeSecurityGroupIngressInput{GroupName: aws.String("default"),
			IpProtocol: aws.String("tcp"), FromPort: aws.Int32(2222), ToPort: aws.Int32(2222), CidrIp: aws.String("10.1.2.0/24")}); err != nil {
			t.Fatal(err)
		}
	})
	if !slices.ContainsFunc(d.SecurityGroups[0].Ingress, func(r nodeapi.SecurityGroupRule) bool { return r.From == 2222 && r.CIDR == "10.1.2.0/24" }) {
		t.Fatalf("the rule authorized through b: ingress %+v", d.SecurityGroups[0].Ingress)
	}

	d = waitedAnswer(t, node, a.svc, watched.id, d.ETag, func() {
		if _, err := b.ec2.TerminateInstances(ctx, &sdk.TerminateInstancesInput{InstanceIds: []string{id2}}); err != nil {
			t.Fatal(err)
		}
	})
	if err := sameMembers(d, []string{ip1}); err != nil {
		t.Fatalf("the termination through b on the other node: %v", err)
	}

	alloc, err := b.ec2.AllocateAddress(ctx, &sdk.AllocateAddressInput{})
	if err != nil {
		t.Fatal(err)
	}
	d = waitedAnswer(t, node, a.svc, watched.id, d.ETag, func() {
		if _, err := b.ec2.AssociateAddress(ctx, &sdk.AssociateAddressInput{InstanceId: aws.String(id1), PublicIp: alloc.PublicIp}); err != nil {
			t.Fatal(err)
		}
	})
	if len(d.Instances) != 1 || d.Instances[0].Network == nil || d.Instances[0].Network.PublicIP != aws.ToString(alloc.PublicIp) {
		t.Fatalf("the address associated through b: %+v; want %s on %s", d.Instances, aws.ToString(alloc.PublicIp), id1)
	}
}
