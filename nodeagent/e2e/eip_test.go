package e2e

import (
	"context"
	"crypto/rand"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	sdk "github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"golang.org/x/sys/unix"

	"ironbark/controller"
	"ironbark/controller/cluster"
	"ironbark/internal/lab"
	"ironbark/nodeagent/natmap"
)

// TestElasticIPQemuGuest is the whole path of issue 12 with a real guest:
// qemu (TCG) behind its tap on the node's bridge, launched through the
// EC2 API into a group that allows tcp 80 and serving HTTP on 80 and
// 8080. An elastic IP from the address pool, associated through the API,
// reaches the guest's port 80 from an outside namespace (behind the
// node's public interface, a veth whose other end is the outside's
// bridge) and not its port 8080; DescribeInstances shows the private and
// the public address; once disassociated, the address reaches nothing.
//
// The node is this machine's root namespace, as on a real node: libvirt
// puts the guest's tap on a bridge there, so the agent's NAT table is the
// root namespace's ip ironbark-nat (one per node, whatever the bridge).
// The test holds a lock while it owns that table and deletes it at the
// end. Forwarding is off in the root namespace: the agent turns it on for
// the public interface and the bridge, which go with the test.
func TestElasticIPQemuGuest(t *testing.T) {
	e := setup(t, nil)
	lab.Require(t, "nft")
	ownRootNAT(t)
	ctx := context.Background()

	// The cluster's own instance subnet (the agent puts its gateway on
	// the bridge), and the outside: a namespace whose bridge holds
	// OUT.1/24, joined to the node's public interface, OUT.2/24. The
	// address pool is OUT.16/28. Both subnets are picked at random so
	// parallel runs on this machine do not meet.
	var r [1]byte
	_, _ = rand.Read(r[:])
	subnet := fmt.Sprintf("10.93.%d.0/24", r[0])
	if err := e.svc.SetNetwork(ctx, "zone-e2e", cluster.Network{Subnet: subnet}, controller.Settings{}.ReservedSubnets()); err != nil {
		t.Fatal(err)
	}
	out := lab.NewLabNet(t, "")
	public := out.NS.VethToRoot(t, out.Bridge)
	node := netip.PrefixFrom(out.Addr.Addr().Next(), out.Addr.Bits())
	if b, err := exec.Command("ip", "addr", "add", node.String(), "dev", public).CombinedOutput(); err != nil {
		t.Fatalf("node's public address: %v: %s", err, b)
	}
	p := out.Addr.Masked().Addr().As4()
	p[3] = 16
	pool := netip.PrefixFrom(netip.AddrFrom4(p), 28)
	if err := controller.AddAddressBlock(ctx, e.db, pool.String()); err != nil {
		t.Fatal(err)
	}

	eri := e.webGuest(t)
	e.startAgent(t, e.token(t), "--public-interface", public)
	e.waitZone(t)
	id, ip, _ := e.runWebGuest(t, eri)
	if !netip.MustParsePrefix(subnet).Contains(ip) {
		t.Fatalf("private address %s: want one from the cluster's subnet %s", ip, subnet)
	}

	alloc, err := e.ec2.AllocateAddress(ctx, &sdk.AllocateAddressInput{Domain: types.DomainTypeVpc})
	if err != nil {
		t.Fatal(err)
	}
	eip := netip.MustParseAddr(aws.ToString(alloc.PublicIp))
	if !pool.Contains(eip) {
		t.Fatalf("AllocateAddress gave %s, not from the pool %s", eip, pool)
	}
	assoc, err := e.ec2.AssociateAddress(ctx, &sdk.AssociateAddressInput{AllocationId: alloc.AllocationId, InstanceId: aws.String(id)})
	if err != nil {
		t.Fatal(err)
	}
	addresses := func() (private, public string) {
		t.Helper()
		d, err := e.ec2.DescribeInstances(ctx, &sdk.DescribeInstancesInput{InstanceIds: []string{id}})
		if err != nil {
			t.Fatal(err)
		}
		in := d.Reservations[0].Instances[0]
		return aws.ToString(in.PrivateIpAddress), aws.ToString(in.PublicIpAddress)
	}
	if priv, pub := addresses(); priv != ip.String() || pub != eip.String() {
		t.Fatalf("DescribeInstances: private %q public %q, want %s and %s", priv, pub, ip, eip)
	}

	waitTCP(t, "the group's port through the elastic IP", out.NS, eip, 80, true)
	waitTCP(t, "a port the group does not name, through the elastic IP", out.NS, eip, 8080, false)
	// The outside knows no route to the private subnet: the elastic IP
	// is its only way in.
	if err := out.NS.ConnectTCP(ip, 80, time.Second); err == nil {
		t.Fatalf("the outside reaches the private address %s", ip)
	}

	if _, err := e.ec2.DisassociateAddress(ctx, &sdk.DisassociateAddressInput{AssociationId: assoc.AssociationId}); err != nil {
		t.Fatal(err)
	}
	waitTCP(t, "the disassociated address", out.NS, eip, 80, false)
	if priv, pub := addresses(); priv != ip.String() || pub != "" {
		t.Fatalf("DescribeInstances after DisassociateAddress: private %q public %q, want %s and none", priv, pub, ip)
	}
	e.terminate(t, id)
}

// ownRootNAT takes, until the test ends, the root namespace's NAT table
// (natmap.TableName, family ip), which an agent whose bridge is there
// programs: other runs of such a test wait meanwhile. At the end, after
// the agent is killed (cleanups run last-first), the table goes.
func ownRootNAT(t *testing.T) {
	t.Helper()
	f, err := os.OpenFile("/run/lock/ironbark-e2e-root-nat.lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		t.Fatalf("lock the root namespace's NAT table: %v", err)
	}
	t.Cleanup(func() {
		if b, err := exec.Command("nft", "delete", "table", "ip", natmap.TableName).CombinedOutput(); err != nil {
			t.Logf("delete table ip %s: %v: %s", natmap.TableName, err, b)
		}
		f.Close() // and the lock with it
	})
}
