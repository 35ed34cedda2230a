package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"net/netip"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	sdk "github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"ironbark/controller"
	"ironbark/controller/cluster"
	"ironbark/internal/lab"
	"ironbark/internal/nodeapi"
)

// netMarker ends the network guest's report on its console.
const netMarker = "IRONBARK-NET-DONE"

// TestInstanceNetwork boots a guest that asks for its address with busybox
// udhcpc on eth0 and then fetches its instance id from the metadata
// service at 169.254.169.254: both must be what DescribeInstances says.
// The agent serves DHCP and metadata on its bridge, which has the
// cluster-side address 10.88.0.1/16 (controller.DefaultInstanceSubnet).
func TestInstanceNetwork(t *testing.T) {
	e := setup(t, nil)
	if out, err := exec.Command("ip", "addr", "add", "10.88.0.1/16", "dev", e.bridge).CombinedOutput(); err != nil {
		t.Fatalf("bridge address: %v: %s", err, out)
	}
	// The guest reports its instance id from the metadata service.
	eri := e.dhcpGuest(t, "netguest", `echo "INSTANCE-ID=$(wget -qO- http://169.254.169.254/latest/meta-data/instance-id)"
echo `+netMarker)
	e.startAgent(t, e.token(t))
	e.waitZone(t)
	id := e.run(t, e.machineImage(t, eri))

	out, err := e.ec2.DescribeInstances(context.Background(), &sdk.DescribeInstancesInput{InstanceIds: []string{id}})
	if err != nil {
		t.Fatal(err)
	}
	in := out.Reservations[0].Instances[0]
	ip := aws.ToString(in.PrivateIpAddress)
	if ip == "" || aws.ToString(in.PrivateDnsName) != controller.PrivateDNSName(ip) {
		t.Fatalf("no private address: %q, %q", ip, aws.ToString(in.PrivateDnsName))
	}
	e.waitState(t, id, types.InstanceStateNameRunning, bootWait)
	e.waitMarker(t, id, netMarker, 1)
	con := e.console(t, id)
	gotIP := regexp.MustCompile(`(?m)^IP=(\S+)`).FindSubmatch(con)
	gotID := regexp.MustCompile(`(?m)^INSTANCE-ID=(\S*)`).FindSubmatch(con)
	if gotIP == nil || string(gotIP[1]) != ip || gotID == nil || string(gotID[1]) != id {
		t.Fatalf("the guest says IP=%q INSTANCE-ID=%q, DescribeInstances %s %s; console tail:\n%s",
			field(gotIP), field(gotID), ip, id, con[max(0, len(con)-3000):])
	}
	t.Logf("guest console:\n%s", bytes.TrimSpace(con[max(0, bytes.LastIndex(con, []byte("IP="))-200):]))
	e.terminate(t, id)
}

func field(m [][]byte) string {
	if m == nil {
		return "<none>"
	}
	return string(m[1])
}

// dhcpGuest registers the ramdisk (named name) of a busybox guest with
// virtio_net whose /init takes an address by DHCP (udhcpc's lease and
// "IP=..." on the console), runs the shell lines body, and idles.
func (e *env) dhcpGuest(t *testing.T, name, body string) string {
	t.Helper()
	initScript := `#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec >/dev/ttyS0 2>&1
modprobe virtio_pci
modprobe virtio_net
ip link set lo up
udhcpc -i eth0 -s /udhcpc.sh -q -f -n -t 30 -T 2 || echo "udhcpc failed"
` + body + `
exec sleep 1000000
`
	return e.register(t, controller.KindRamdisk, name, lab.DHCPGuestInitramfs(t, filepath.Join(filepath.Dir(e.state), "initrd-"+name+".gz"),
		lab.GuestKernel(t), initScript, "virtio_pci", "virtio_net"))
}

// systemMarker ends the SYSTEM-mode guest's report on its console.
const systemMarker = "IRONBARK-SYSTEM-DONE"

// TestSystemModeQemuGuest: an instance of a SYSTEM-mode cluster is bridged
// onto the cluster's own network and takes its address from the DHCP
// server already there, not from the agent. The cluster network is a
// namespace on the node's bridge holding its router's address, .1, and a
// dnsmasq the operator has told the instance's MAC and address (what the
// controller recorded); the node's bridge has the node's own address on
// that network, .3, so the agent's DHCP server runs there too, and the
// agent must leave the instance to dnsmasq. dnsmasq answers a second
// late: an agent answering would win. The guest reads its instance ID from
// the metadata address through its default route, the router: the node's
// bridge filter brings it to the node's metadata service.
func TestSystemModeQemuGuest(t *testing.T) {
	e := setup(t, nil)
	lab.Require(t, "dnsmasq")
	ctx := context.Background()
	var r [1]byte
	_, _ = rand.Read(r[:])
	subnet := netip.MustParsePrefix(fmt.Sprintf("10.94.%d.0/24", r[0]))
	router := subnet.Addr().Next()
	if err := e.svc.SetNetwork(ctx, "zone-e2e", cluster.Network{Mode: nodeapi.ModeSystem, Subnet: subnet.String()},
		controller.Settings{}.ReservedSubnets()); err != nil {
		t.Fatal(err)
	}
	node := netip.PrefixFrom(router.Next().Next(), subnet.Bits())
	if out, err := exec.Command("ip", "addr", "add", node.String(), "dev", e.bridge).CombinedOutput(); err != nil {
		t.Fatalf("the node's address on the bridge: %v: %s", err, out)
	}
	network := lab.NewLabNet(t, netip.PrefixFrom(router, subnet.Bits()).String())
	root := network.NS.VethToRoot(t, network.Bridge)
	if out, err := exec.Command("ip", "link", "set", root, "master", e.bridge).CombinedOutput(); err != nil {
		t.Fatalf("enslave %s to %s: %v: %s", root, e.bridge, err, out)
	}

	// Its default route is the cluster network's router: the node's
	// bridge filter still brings the metadata address to the node.
	eri := e.dhcpGuest(t, "systemguest", lab.GuestMetadataShell+`
echo "INSTANCE-ID=$(md instance-id)"
echo `+systemMarker)
	e.startAgent(t, e.token(t))
	e.waitZone(t)
	id := e.run(t, e.machineImage(t, eri))
	d, err := e.ec2.DescribeInstances(ctx, &sdk.DescribeInstancesInput{InstanceIds: []string{id}})
	if err != nil {
		t.Fatal(err)
	}
	in := d.Reservations[0].Instances[0]
	ip, mac := aws.ToString(in.PrivateIpAddress), aws.ToString(in.NetworkInterfaces[0].MacAddress)
	if !subnet.Contains(netip.MustParseAddr(ip)) {
		t.Fatalf("private address %s: want one of the cluster's subnet %s", ip, subnet)
	}
	// The guest's udhcpc tries for a minute: dnsmasq may start after it.
	network.NS.Start(t, "dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--port=0", "--user=root",
		"--interface="+network.Bridge, "--bind-interfaces", "--dhcp-leasefile="+filepath.Join(t.TempDir(), "leases"),
		"--dhcp-range="+subnet.Addr().String()+",static,255.255.255.0,1h", "--dhcp-host="+mac+","+ip,
		"--dhcp-reply-delay=1", "--log-dhcp")

	e.waitState(t, id, types.InstanceStateNameRunning, bootWait)
	e.waitMarker(t, id, systemMarker, 1)
	con := e.console(t, id)
	lease := regexp.MustCompile(`lease of (\S+) obtained from ([0-9.]+)`).FindSubmatch(con)
	if lease == nil || string(lease[1]) != ip || string(lease[2]) != router.String() {
		t.Fatalf("the guest's lease: %q, want %s from the cluster network's server %s (not the node, %s); console tail:\n%s",
			lease, ip, router, node.Addr(), con[max(0, len(con)-2000):])
	}
	t.Logf("guest: %s", lease[0])
	if !bytes.Contains(con, []byte("INSTANCE-ID="+id)) {
		t.Fatalf("the guest behind the cluster's router did not read its metadata (want INSTANCE-ID=%s); console tail:\n%s", id, con[max(0, len(con)-2000):])
	}
	e.terminate(t, id)
}
