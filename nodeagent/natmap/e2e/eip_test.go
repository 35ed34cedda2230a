package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	sdk "github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go"
	"github.com/vishvananda/netlink"
	"libvirt.org/go/libvirt"

	"ironbark/controller"
	"ironbark/controller/cluster"
	"ironbark/controller/ec2"
	"ironbark/controller/ec2/ec2test"
	"ironbark/images/blobstore"
	"ironbark/internal/lab"
	"ironbark/internal/nodeapi"
	"ironbark/internal/store"
	"ironbark/nodeagent"
	"ironbark/nodeagent/natmap/natmaptest"
)

const (
	zone   = "zone-eip"
	subnet = "10.91.0.0/24"
	pool   = "198.51.100.16/28"
	wait   = 30 * time.Second
)

type env struct {
	ec2   *sdk.Client
	svc   *cluster.Service
	blobs *blobstore.Store
	db    *store.DB
	state string
	// nodeURL and token are where and how the agent enrolls.
	nodeURL, token string
	// endpoint and admin are the EC2 URL and the admin's keys, for the
	// AWS CLI.
	endpoint string
	admin    controller.Account
	// stopAgent stops the agent startAgent last started.
	stopAgent func()
	node      *natmaptest.Node
	world     *natmaptest.World
	// securityGroups has the agent enforce them (off where a test is
	// about NAT alone: its instances are in the default group).
	securityGroups bool
}

func testLog(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// start runs a controller (EC2 API on loopback, node API on loopback) with
// one cluster whose instance subnet is its own, and the outside and one
// node as namespaces.
func start(t *testing.T) *env {
	lab.Require(t, "ip", "nft", "qemu-img", "aws", "busybox")
	e := &env{state: t.TempDir()}
	e.world = natmaptest.NewWorld(t, "198.51.100.1/24")
	e.node = e.world.AddNode(t, "198.51.100.2", "") // the agent gives the bridge its gateway

	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	dir := t.TempDir()
	log := testLog(t)
	db, err := store.Open(ctx, filepath.Join(dir, "ironbark.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.Migrate(ctx, controller.Migrations()); err != nil {
		t.Fatal(err)
	}
	e.db = db
	admin, err := controller.EnsureAdmin(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	if e.blobs, err = blobstore.Open(filepath.Join(dir, "blobs")); err != nil {
		t.Fatal(err)
	}
	var svc *cluster.Service
	cloud, err := controller.New(controller.Config{
		Region: "ironbark", Endpoint: "http://127.0.0.1/", PublicAddresses: []string{pool},
		ArtifactURL: func(d string) string {
			return blobstore.URLPath(strings.TrimSuffix(nodeapi.PathBlobs, "/"), blobstore.Digest(d))
		},
		Notify: func(node string) { svc.Notify(node) },
	}, db, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	svc, err = cluster.New(ctx, cluster.Config{DB: db, DataDir: dir, Ledger: cloud, Logger: log,
		Blobs: e.blobs.HandlerAt(nodeapi.PathBlobs), DesiredPoll: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	cloud.SetPlacer(svc)
	e.svc = svc
	if err := svc.AddCluster(ctx, zone, "GREEDY"); err != nil {
		t.Fatal(err)
	}
	if err := svc.SetNetwork(ctx, zone, cluster.Network{Subnet: subnet}, controller.Settings{}.ReservedSubnets()); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	key, err := controller.TokenKey(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(ec2.NewServer(ec2.Config{Handler: cloud, Credentials: cloud, Logger: log, TokenKey: key}))
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = svc.Serve(ctx, ln) }()
	go func() { defer wg.Done(); _ = svc.Run(ctx) }()
	t.Cleanup(func() { srv.Close(); cancel(); ln.Close(); wg.Wait() })
	e.endpoint, e.admin = srv.URL+"/", admin
	e.ec2 = sdk.New(sdk.Options{
		HTTPClient:   &http.Client{Transport: ec2test.BufferingTransport{Next: http.DefaultTransport}},
		Region:       "ironbark",
		BaseEndpoint: aws.String(srv.URL + "/services/compute"),
		Credentials:  credentials.NewStaticCredentialsProvider(admin.AccessKey, admin.SecretKey, ""),
	})
	tok, err := svc.NewToken(ctx, svc.CA(), zone, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	// test:///default keeps its domains only while a connection is open.
	conn, err := libvirt.NewConnect("test:///default")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	e.nodeURL, e.token = "https://"+ln.Addr().String(), tok
	return e
}

// startAgent runs a node agent whose instance network (bridge, public
// interface, NAT table) is the node namespace's; it returns what stops it.
func (e *env) startAgent(t *testing.T) (stop func()) {
	t.Helper()
	a, err := nodeagent.New(nodeagent.Config{Controller: e.nodeURL, Token: e.token, LibvirtURI: "test:///default",
		StateDir: e.state, Logger: testLog(t), StopTimeout: time.Second, HypervisorGrace: time.Second, Hostname: "node-eip",
		Bridge: e.node.Bridge, NoSecurityGroups: !e.securityGroups, PublicInterface: e.node.Public, NetNS: e.node.NetNSPath()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Error(err)
			}
		})
	}
	t.Cleanup(stop)
	e.stopAgent = stop
	return stop
}

// until polls cond (the agent acts on a long poll of the node API) and
// fails with what after wait.
func until(t *testing.T, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func reach(addr, want string, from func(string) (string, error)) func() error {
	return func() error {
		got, err := from(addr)
		if err != nil {
			return err
		}
		if got != want {
			return &mismatch{got, want}
		}
		return nil
	}
}

type mismatch struct{ got, want string }

func (m *mismatch) Error() string { return "answered " + m.got + ", want " + m.want }

// TestElasticIPThroughEC2API: RunInstances in a cluster with its own
// subnet gives private addresses from it; AssociateAddress makes the
// public address reach the instance's namespace from outside, and
// reassociation moves it; DescribeInstances and DescribeAddresses show
// both addresses; an agent restart leaves the same ruleset; Release
// removes the mapping.
func TestElasticIPThroughEC2API(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	stop := e.startAgent(t)
	until(t, "zone available", func() error {
		zs, err := e.ec2.DescribeAvailabilityZones(ctx, &sdk.DescribeAvailabilityZonesInput{})
		if err == nil && (len(zs.AvailabilityZones) != 1 || zs.AvailabilityZones[0].State != types.AvailabilityZoneStateAvailable) {
			err = &mismatch{"unavailable", "available"}
		}
		return err
	})
	img := e.image(t)
	run, err := e.ec2.RunInstances(ctx, &sdk.RunInstancesInput{ImageId: aws.String(img), MinCount: aws.Int32(2), MaxCount: aws.Int32(2),
		InstanceType: types.InstanceTypeM1Small})
	if err != nil {
		t.Fatal(err)
	}
	var ids, ips []string
	for _, in := range run.Instances {
		ids, ips = append(ids, aws.ToString(in.InstanceId)), append(ips, aws.ToString(in.PrivateIpAddress))
	}
	for _, ip := range ips {
		if !strings.HasPrefix(ip, "10.91.0.") {
			t.Fatalf("private addresses %v: want them from the cluster's subnet %s", ips, subnet)
		}
	}
	subnets, err := e.ec2.DescribeSubnets(ctx, &sdk.DescribeSubnetsInput{})
	if err != nil || len(subnets.Subnets) != 1 || aws.ToString(subnets.Subnets[0].CidrBlock) != subnet {
		t.Fatalf("DescribeSubnets: %v %+v", err, subnets)
	}
	// The instances' namespaces stand in for their guests, at the
	// addresses the controller gave them.
	sn := netip.MustParsePrefix(subnet)
	// i0 takes its address by DHCP and asks the metadata service who it
	// is; i1 is configured by hand.
	i0 := e.dhcpAndMetadata(t, ids[0], ips[0])
	natmaptest.Serve(t, i0, "i0")
	e.node.AddInstanceIn(t, "i1", ips[1], sn)
	until(t, "the node reaches its instances", func() error {
		_, err := natmaptest.Dial(e.node.NS, ips[0])
		return err
	})

	alloc, err := e.ec2.AllocateAddress(ctx, &sdk.AllocateAddressInput{Domain: types.DomainTypeVpc})
	if err != nil {
		t.Fatal(err)
	}
	eip := aws.ToString(alloc.PublicIp)
	if _, err := e.ec2.AssociateAddress(ctx, &sdk.AssociateAddressInput{AllocationId: alloc.AllocationId, InstanceId: aws.String(ids[0])}); err != nil {
		t.Fatal(err)
	}
	out := func(addr string) (string, error) { return natmaptest.Dial(e.world.Out, addr) }
	until(t, "the elastic IP reaches i0 from outside", reach(eip, "i0 198.51.100.1", out))

	desc, err := e.ec2.DescribeInstances(ctx, &sdk.DescribeInstancesInput{InstanceIds: ids[:1]})
	if err != nil {
		t.Fatal(err)
	}
	in := desc.Reservations[0].Instances[0]
	if aws.ToString(in.PublicIpAddress) != eip || aws.ToString(in.PrivateIpAddress) != ips[0] || aws.ToString(in.PublicDnsName) == "" {
		t.Fatalf("DescribeInstances: public %q private %q dns %q", aws.ToString(in.PublicIpAddress), aws.ToString(in.PrivateIpAddress), aws.ToString(in.PublicDnsName))
	}
	addrs, err := e.ec2.DescribeAddresses(ctx, &sdk.DescribeAddressesInput{})
	if err != nil || len(addrs.Addresses) != 1 || aws.ToString(addrs.Addresses[0].PrivateIpAddress) != ips[0] ||
		aws.ToString(addrs.Addresses[0].InstanceId) != ids[0] {
		t.Fatalf("DescribeAddresses: %v %+v", err, addrs)
	}

	// Associated elsewhere: refused without AllowReassociation, and
	// nothing moves.
	_, err = e.ec2.AssociateAddress(ctx, &sdk.AssociateAddressInput{AllocationId: alloc.AllocationId, InstanceId: aws.String(ids[1])})
	if code(err) != "Resource.AlreadyAssociated" {
		t.Fatalf("second association: %v, want Resource.AlreadyAssociated", err)
	}
	natmaptest.MustReach(t, e.world.Out, eip, "i0 198.51.100.1")
	// Moved with the real AWS CLI.
	assoc := e.awsCLI(t, "ec2", "associate-address", "--allocation-id", aws.ToString(alloc.AllocationId),
		"--instance-id", ids[1], "--allow-reassociation")
	if !strings.HasPrefix(fmt.Sprint(assoc["AssociationId"]), "eipassoc-") {
		t.Fatalf("aws ec2 associate-address: %v", assoc)
	}
	until(t, "the elastic IP moves to i1", reach(eip, "i1 198.51.100.1", out))

	// An agent restart: the rules hold meanwhile and come back the same.
	// (The node's other tables, the bridge filter the instance services
	// keep, are rebuilt in their own time; natmap's TestElasticIPs
	// compares the whole ruleset.)
	before := e.node.NATTable(t)
	stop()
	natmaptest.MustReach(t, e.world.Out, eip, "i1 198.51.100.1")
	e.startAgent(t)
	// The new agent rebuilt its table once it had the desired list; a
	// launch it then reports is the sign it has.
	until(t, "the restarted agent reports", func() error {
		d, err := e.ec2.DescribeInstances(ctx, &sdk.DescribeInstancesInput{InstanceIds: ids})
		if err != nil {
			return err
		}
		for _, r := range d.Reservations {
			for _, in := range r.Instances {
				if in.State.Name != types.InstanceStateNameRunning {
					return &mismatch{string(in.State.Name), "running"}
				}
			}
		}
		return nil
	})
	if after := e.node.NATTable(t); after != before {
		t.Errorf("table ip ironbark-nat changed across an agent restart:\n--- before\n%s--- after\n%s", before, after)
	}
	natmaptest.MustReach(t, e.world.Out, eip, "i1 198.51.100.1")

	// Released: the address reaches nobody.
	if _, err := e.ec2.ReleaseAddress(ctx, &sdk.ReleaseAddressInput{AllocationId: alloc.AllocationId}); err != nil {
		t.Fatal(err)
	}
	until(t, "the released address stops reaching i1", func() error {
		if got, err := out(eip); err == nil {
			return &mismatch{got, "no answer"}
		}
		return nil
	})
	if rs := e.node.Ruleset(t); strings.Contains(rs, eip) {
		t.Errorf("the released address is still in the ruleset:\n%s", rs)
	}

	// An address disassociated while the agent is down: the restarted
	// agent, with nothing to map, still removes the old rule.
	alloc2, err := e.ec2.AllocateAddress(ctx, &sdk.AllocateAddressInput{Domain: types.DomainTypeVpc})
	if err != nil {
		t.Fatal(err)
	}
	eip2 := aws.ToString(alloc2.PublicIp)
	a2, err := e.ec2.AssociateAddress(ctx, &sdk.AssociateAddressInput{AllocationId: alloc2.AllocationId, InstanceId: aws.String(ids[0])})
	if err != nil {
		t.Fatal(err)
	}
	until(t, "a new elastic IP reaches i0", reach(eip2, "i0 198.51.100.1", out))
	e.stopAgent()
	if _, err := e.ec2.DisassociateAddress(ctx, &sdk.DisassociateAddressInput{AssociationId: a2.AssociationId}); err != nil {
		t.Fatal(err)
	}
	natmaptest.MustReach(t, e.world.Out, eip2, "i0 198.51.100.1") // the old rule, until an agent runs
	e.startAgent(t)
	until(t, "the restarted agent drops the disassociated address", func() error {
		if got, err := out(eip2); err == nil {
			return &mismatch{got, "no answer"}
		}
		return nil
	})

	// The cluster gives launches a public address: the new instance is
	// reachable through it at once, with no AssociateAddress.
	if err := e.svc.SetNetwork(ctx, zone, cluster.Network{Subnet: subnet, PublicIPs: true}, controller.Settings{}.ReservedSubnets()); err != nil {
		t.Fatal(err)
	}
	run2, err := e.ec2.RunInstances(ctx, &sdk.RunInstancesInput{ImageId: aws.String(img), MinCount: aws.Int32(1), MaxCount: aws.Int32(1),
		InstanceType: types.InstanceTypeM1Small})
	if err != nil {
		t.Fatal(err)
	}
	i2 := run2.Instances[0]
	pub2 := aws.ToString(i2.PublicIpAddress)
	if pub2 == "" {
		t.Fatalf("a launch in a cluster with public IPs got none: %+v", i2)
	}
	e.node.AddInstanceIn(t, "i2", aws.ToString(i2.PrivateIpAddress), sn)
	until(t, "the launch-time public address reaches i2", reach(pub2, "i2 198.51.100.1", out))
}

// dhcpAndMetadata checks what an instance of the cluster sees on the
// node's bridge: a guest with its MAC (a namespace standing in) gets its
// private address by DHCP from the subnet's gateway, the agent on the
// node, and the metadata service at 169.254.169.254 says who it is. The
// namespace, configured with that address, is returned.
func (e *env) dhcpAndMetadata(t *testing.T, id, ip string) *lab.NetNS {
	t.Helper()
	ctx := context.Background()
	d, err := e.ec2.DescribeInstances(ctx, &sdk.DescribeInstancesInput{InstanceIds: []string{id}})
	if err != nil {
		t.Fatal(err)
	}
	mac := aws.ToString(d.Reservations[0].Instances[0].NetworkInterfaces[0].MacAddress)
	hw, err := net.ParseMAC(mac)
	if err != nil {
		t.Fatalf("instance MAC %q: %v", mac, err)
	}
	guest := lab.NewNetNS(t)
	dev := e.node.NS.Link(t, e.node.Bridge, guest)
	if l, err := guest.Netlink().LinkByName(dev); err != nil {
		t.Fatal(err)
	} else if err := guest.Netlink().LinkSetHardwareAddr(l, hw); err != nil {
		t.Fatal(err)
	}
	var lease string
	until(t, "DHCP answers the instance", func() error {
		out, err := guest.Command(ctx, "busybox", "udhcpc", "-i", dev, "-n", "-q", "-f", "-t", "2", "-T", "1", "-s", "/bin/true").CombinedOutput()
		lease = string(out)
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})
	if want := "lease of " + ip + " obtained from 10.91.0.1"; !strings.Contains(lease, want) {
		t.Fatalf("udhcpc: %q, want %q", lease, want)
	}
	guest.AddAddr(t, dev, netip.PrefixFrom(netip.MustParseAddr(ip), 24))
	if err := guest.Netlink().RouteAdd(&netlink.Route{Gw: net.ParseIP("10.91.0.1")}); err != nil {
		t.Fatal(err)
	}
	var got string
	until(t, "the metadata service answers the instance", func() error {
		// The request goes over a connection dialed on the namespace's
		// thread: http.Client would dial from another goroutine, outside.
		return guest.Do(func() error {
			c, err := (&net.Dialer{Timeout: 3 * time.Second}).Dial("tcp4", "169.254.169.254:80")
			if err != nil {
				return err
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(3 * time.Second))
			req, _ := http.NewRequest(http.MethodGet, "http://169.254.169.254/latest/meta-data/instance-id", nil)
			if err := req.Write(c); err != nil {
				return err
			}
			resp, err := http.ReadResponse(bufio.NewReader(c), req)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			got = string(b)
			return err
		})
	})
	if got != id {
		t.Fatalf("metadata instance-id %q, want %q", got, id)
	}
	for _, line := range strings.Split(lease, "\n") {
		if strings.Contains(line, "lease of") {
			t.Logf("%s: %s; metadata instance-id %s", id, strings.TrimSpace(line), got)
		}
	}
	return guest
}

// awsCLI runs the AWS CLI against the controller as the admin and
// returns its JSON answer.
func (e *env) awsCLI(t *testing.T, args ...string) map[string]any {
	t.Helper()
	cmd := exec.Command("aws", append([]string{"--endpoint-url", e.endpoint, "--output", "json"}, args...)...)
	home := t.TempDir()
	cmd.Env = append(os.Environ(), "HOME="+home, "AWS_CONFIG_FILE="+filepath.Join(home, "none"),
		"AWS_SHARED_CREDENTIALS_FILE="+filepath.Join(home, "none"), "AWS_ACCESS_KEY_ID="+e.admin.AccessKey,
		"AWS_SECRET_ACCESS_KEY="+e.admin.SecretKey, "AWS_DEFAULT_REGION=ironbark", "AWS_PAGER=")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	b, err := cmd.Output()
	if err != nil {
		t.Fatalf("aws %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	var v map[string]any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("aws %s: %v\n%s", strings.Join(args, " "), err, b)
	}
	return v
}

// code is an API error's EC2 code.
func code(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// image registers a small raw machine image.
func (e *env) image(t *testing.T) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "root.img")
	if err := os.WriteFile(root, bytes.Repeat([]byte("ironbark"), 1<<17), 0o644); err != nil {
		t.Fatal(err)
	}
	d, n, err := e.blobs.PutFile(context.Background(), root)
	if err != nil {
		t.Fatal(err)
	}
	id, err := controller.RegisterStoredImage(context.Background(), e.db, controller.ImageRecord{Name: "eip-" + d.Hex()[:8],
		Digest: string(d), Size: n, Public: true})
	if err != nil {
		t.Fatal(err)
	}
	return id
}
