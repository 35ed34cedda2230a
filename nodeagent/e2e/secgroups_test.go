package e2e

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	sdk "github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"ironbark/controller"
	"ironbark/images/blobstore"
	"ironbark/internal/lab"
	"ironbark/internal/nodeapi"
	"ironbark/nodeagent/secgroups"
)

// TestSecurityGroupsThroughEC2 drives security groups through the EC2 API
// (aws-sdk-go-v2) and checks them on real packets at the node: the
// controller in-process, ironbark-node as a process inside a lab
// namespace (libvirt's test driver: the instances' domains are not run),
// and for each instance a namespace with its private address on the
// node's bridge standing in for the guest. Authorize opens a port, a peer
// group rule follows a launch and a termination, Revoke closes the port,
// and a killed and restarted agent leaves the same table.
func TestSecurityGroupsThroughEC2(t *testing.T) {
	lab.Require(t, "ip", "nft", "qemu-img")
	n := lab.NewLabNet(t, "")
	work := t.TempDir()
	e := &env{instanceSubnet: n.Addr.Masked().String()}
	e.listen = func(addr string) (ln net.Listener, err error) {
		err = n.NS.Do(func() error { ln, err = net.Listen("tcp", addr); return err })
		return ln, err
	}
	var err error
	if e.blobs, err = blobstore.Open(filepath.Join(work, "blobs")); err != nil {
		t.Fatal(err)
	}
	e.startController(t, work, e.blobs.HandlerAt(nodeapi.PathBlobs))
	e.bin = buildAgent(t, work)
	state := filepath.Join(work, "node")
	startAgent := func(token string) *lab.Process {
		args := []string{"--controller", e.nodeURL, "--libvirt", "test:///default", "--state-dir", state,
			"--bridge", n.Bridge, "--identity", "", "--hostname", "sg-node", "--log-level", "debug", "--stop-timeout", "1s",
			"--max-cores", "8", "--max-memory-mib", "8192", "--max-disk-gib", "40"}
		if token != "" {
			args = append(args, "--token", token)
		}
		return n.NS.Start(t, e.bin, args...)
	}
	agent := startAgent(e.token(t))
	e.waitZone(t)

	root := filepath.Join(work, "root.img")
	if err := os.WriteFile(root, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	d, size, err := e.blobs.PutFile(context.Background(), root)
	if err != nil {
		t.Fatal(err)
	}
	emi, err := controller.RegisterStoredImage(context.Background(), e.db, controller.ImageRecord{Name: "sg-root",
		Digest: string(d), Size: size, Public: true})
	if err != nil {
		t.Fatal(err)
	}

	ctx := context.Background()
	group := func(name string) string {
		out, err := e.ec2.CreateSecurityGroup(ctx, &sdk.CreateSecurityGroupInput{GroupName: aws.String(name), Description: aws.String(name)})
		if err != nil {
			t.Fatal(err)
		}
		return aws.ToString(out.GroupId)
	}
	web, app := group("web"), group("app")
	// guest launches an instance into a group and puts its stand-in on
	// the bridge: a namespace with the instance's address.
	type guest struct {
		id string
		ns *lab.NetNS
		ip netip.Addr
	}
	launch := func(g string) guest {
		out, err := e.ec2.RunInstances(ctx, &sdk.RunInstancesInput{ImageId: aws.String(emi), InstanceType: types.InstanceTypeM1Small,
			MinCount: aws.Int32(1), MaxCount: aws.Int32(1), SecurityGroupIds: []string{g}})
		if err != nil {
			t.Fatalf("RunInstances: %v", err)
		}
		in := out.Instances[0]
		gu := guest{id: aws.ToString(in.InstanceId), ns: lab.NewNetNS(t), ip: netip.MustParseAddr(aws.ToString(in.PrivateIpAddress))}
		end := n.NS.Link(t, n.Bridge, gu.ns)
		gu.ns.AddAddr(t, end, netip.PrefixFrom(gu.ip, n.Addr.Bits()))
		gu.ns.Route(t, netip.MustParsePrefix("0.0.0.0/0"), n.Addr.Addr())
		return gu
	}
	b := launch(web)
	a := launch(app)
	c := launch(group("other"))
	b.ns.ServeTCP(t, "0.0.0.0", 80, 8080)

	// until waits for a connection to be allowed or denied: the node
	// applies a change within a second; the deadline guards a hang.
	until := func(what string, from guest, to guest, port int, allowed bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			err := from.ns.ConnectTCP(to.ip, port, 700*time.Millisecond)
			if (err == nil) == allowed {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %s to %s:%d allowed=%v never came (%v)\n%s", what, from.id, to.id, port, allowed, err, agent.Output())
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	tcp := func(port int32, cidr, peer string) []types.IpPermission {
		p := types.IpPermission{IpProtocol: aws.String("tcp"), FromPort: aws.Int32(port), ToPort: aws.Int32(port)}
		if cidr != "" {
			p.IpRanges = []types.IpRange{{CidrIp: aws.String(cidr)}}
		} else {
			p.UserIdGroupPairs = []types.UserIdGroupPair{{GroupId: aws.String(peer)}}
		}
		return []types.IpPermission{p}
	}
	until("web allows nothing yet", a, b, 80, false)
	if _, err := e.ec2.AuthorizeSecurityGroupIngress(ctx, &sdk.AuthorizeSecurityGroupIngressInput{GroupId: aws.String(web),
		IpPermissions: tcp(80, "0.0.0.0/0", "")}); err != nil {
		t.Fatal(err)
	}
	until("authorized port 80", a, b, 80, true)
	if _, err := e.ec2.AuthorizeSecurityGroupIngress(ctx, &sdk.AuthorizeSecurityGroupIngressInput{GroupId: aws.String(web),
		IpPermissions: tcp(8080, "", app)}); err != nil {
		t.Fatal(err)
	}
	until("8080 for app", a, b, 8080, true)
	until("8080 not for other", c, b, 8080, false)
	dd := launch(app)
	until("8080 for app's new member", dd, b, 8080, true)

	// The agent is killed and restarted: the table stays meanwhile, and
	// the new agent, told the same state, leaves it the same.
	table := func() string {
		out, err := n.NS.Command(ctx, "nft", "list", "table", "inet", secgroups.TableName(n.Bridge)).CombinedOutput()
		if err != nil {
			t.Fatalf("nft list table: %v: %s", err, out)
		}
		return string(out)
	}
	before := table()
	_ = syscall.Kill(-agent.Cmd.Process.Pid, syscall.SIGKILL)
	agent.Wait()
	if got := table(); got != before {
		t.Fatalf("the table changed when the agent died:\n%s", got)
	}
	until("8080 for app, no agent", dd, b, 8080, true)
	agent = startAgent("")
	deadline := time.Now().Add(time.Minute)
	for !strings.Contains(agent.Output(), "security groups applied") {
		if time.Now().After(deadline) {
			t.Fatalf("the restarted agent never applied the groups:\n%s", agent.Output())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if after := table(); after != before {
		t.Fatalf("the table after the agent's restart differs:\nbefore:\n%s\nafter:\n%s", before, after)
	}

	if _, err := e.ec2.TerminateInstances(ctx, &sdk.TerminateInstancesInput{InstanceIds: []string{dd.id}}); err != nil {
		t.Fatal(err)
	}
	until("8080 for a terminated member", dd, b, 8080, false)
	if _, err := e.ec2.RevokeSecurityGroupIngress(ctx, &sdk.RevokeSecurityGroupIngressInput{GroupId: aws.String(web),
		IpPermissions: tcp(80, "0.0.0.0/0", "")}); err != nil {
		t.Fatal(err)
	}
	until("revoked port 80", a, b, 80, false)
	until("8080 for app, still", a, b, 8080, true)
	if rs := table(); strings.Contains(rs, dd.id) || strings.Contains(rs, dd.ip.String()) {
		t.Fatalf("the terminated instance is still in the table:\n%s", rs)
	}
	t.Logf("table at the end:\n%s", table())
}

// webMarker is what the web guest prints once it serves.
const webMarker = "IRONBARK-SG-GUEST-UP"

// webGuest registers the ramdisk of a guest that takes its address by
// DHCP, asks the metadata service for its instance id, prints both, and
// serves HTTP on ports 80 and 8080.
func (e *env) webGuest(t *testing.T) string {
	t.Helper()
	return e.dhcpGuest(t, "webguest", `echo "INSTANCE-ID=$(wget -qO- http://169.254.169.254/latest/meta-data/instance-id)"
mkdir -p /www && echo hello > /www/index.html
httpd -p 80 -h /www
httpd -p 8080 -h /www
echo `+webMarker)
}

// runWebGuest makes the security group "web", which allows tcp 80, and
// launches the web guest (ramdisk eri) into it through the EC2 API; it
// waits until the guest serves, with the address and the instance id the
// controller gave it (DHCP and metadata are always allowed). It returns
// the instance's id and private address, and the group's id.
func (e *env) runWebGuest(t *testing.T, eri string) (id string, ip netip.Addr, group string) {
	t.Helper()
	ctx := context.Background()
	sg, err := e.ec2.CreateSecurityGroup(ctx, &sdk.CreateSecurityGroupInput{GroupName: aws.String("web"), Description: aws.String("web")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.ec2.AuthorizeSecurityGroupIngress(ctx, &sdk.AuthorizeSecurityGroupIngressInput{GroupId: sg.GroupId, IpPermissions: tcpPort(80)}); err != nil {
		t.Fatal(err)
	}
	run, err := e.ec2.RunInstances(ctx, &sdk.RunInstancesInput{ImageId: aws.String(e.machineImage(t, eri)),
		InstanceType: types.InstanceTypeM1Small, MinCount: aws.Int32(1), MaxCount: aws.Int32(1), SecurityGroupIds: []string{aws.ToString(sg.GroupId)},
		Placement: &types.Placement{AvailabilityZone: aws.String("zone-e2e")}})
	if err != nil {
		t.Fatalf("RunInstances: %v", err)
	}
	id = aws.ToString(run.Instances[0].InstanceId)
	ip = netip.MustParseAddr(aws.ToString(run.Instances[0].PrivateIpAddress))
	e.waitState(t, id, types.InstanceStateNameRunning, bootWait)
	e.waitMarker(t, id, webMarker, 1)
	if con := e.console(t, id); !bytes.Contains(con, []byte("IP="+ip.String())) || !bytes.Contains(con, []byte("INSTANCE-ID="+id)) {
		t.Fatalf("the guest lacks its DHCP address or its metadata; console tail:\n%s", con[max(0, len(con)-2000):])
	}
	return id, ip, aws.ToString(sg.GroupId)
}

// tcpPort is an ingress permission for one TCP port from anywhere.
func tcpPort(p int32) []types.IpPermission {
	return []types.IpPermission{{IpProtocol: aws.String("tcp"), FromPort: aws.Int32(p), ToPort: aws.Int32(p),
		IpRanges: []types.IpRange{{CidrIp: aws.String("0.0.0.0/0")}}}}
}

// waitTCP waits until a TCP connection from ns to ip:port is made
// (allowed) or not (a refusal or silence): the node applies a change
// within a second; the deadline guards a hang.
func waitTCP(t *testing.T, what string, ns *lab.NetNS, ip netip.Addr, port int, allowed bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := ns.ConnectTCP(ip, port, time.Second)
		if (err == nil) == allowed {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s:%d allowed=%v never came (%v)", what, ip, port, allowed, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestSecurityGroupsQemuGuest is the whole path with a real guest: qemu
// (TCG) behind its tap on the node's bridge, launched through the EC2 API
// into a group that allows tcp 80. The guest takes its address by DHCP
// and reads its metadata (both always allowed), and serves HTTP on 80 and
// 8080; a client on the bridge reaches 80, not 8080, until 8080 is
// authorized too; after a revoke 80 is closed.
func TestSecurityGroupsQemuGuest(t *testing.T) {
	e := setup(t, nil)
	lab.Require(t, "nft")
	if out, err := exec.Command("ip", "addr", "add", "10.88.0.1/16", "dev", e.bridge).CombinedOutput(); err != nil {
		t.Fatalf("bridge address: %v: %s", err, out)
	}
	eri := e.webGuest(t)
	e.startAgent(t, e.token(t))
	e.waitZone(t)
	ctx := context.Background()
	id, ip, sg := e.runWebGuest(t, eri)

	// A client on the node's bridge: a namespace whose bridge is joined to
	// it by a veth pair.
	client := lab.NewLabNet(t, "10.88.0.250/16")
	root := client.NS.VethToRoot(t, client.Bridge)
	if out, err := exec.Command("ip", "link", "set", root, "master", e.bridge).CombinedOutput(); err != nil {
		t.Fatalf("enslave %s to %s: %v: %s", root, e.bridge, err, out)
	}
	waitTCP(t, "the group's port", client.NS, ip, 80, true)
	waitTCP(t, "a port the group does not name", client.NS, ip, 8080, false)
	if _, err := e.ec2.AuthorizeSecurityGroupIngress(ctx, &sdk.AuthorizeSecurityGroupIngressInput{GroupId: aws.String(sg), IpPermissions: tcpPort(8080)}); err != nil {
		t.Fatal(err)
	}
	waitTCP(t, "8080 authorized", client.NS, ip, 8080, true)
	if _, err := e.ec2.RevokeSecurityGroupIngress(ctx, &sdk.RevokeSecurityGroupIngressInput{GroupId: aws.String(sg), IpPermissions: tcpPort(80)}); err != nil {
		t.Fatal(err)
	}
	waitTCP(t, "80 revoked", client.NS, ip, 80, false)
	e.terminate(t, id)
	out, err := exec.Command("nft", "list", "table", "inet", secgroups.TableName(e.bridge)).CombinedOutput()
	if err != nil || bytes.Contains(out, []byte(id)) {
		t.Fatalf("after terminate: %v\n%s", err, out)
	}
}
