package e2e

import (
	"context"
	"net"
	"net/netip"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	sdk "github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"ironbark/controller"
	"ironbark/images/blobstore"
	"ironbark/images/initramfs"
	"ironbark/internal/lab"
	"ironbark/internal/nodeapi"
)

// Guards against hangs on two busy cores, not timings: Xen under TCG.
const (
	xenBootWait  = 6 * time.Minute
	xenGuestWait = 5 * time.Minute
)

// TestXenNode is the seed's node for real: Xen with a PV dom0 in a qemu
// (TCG) on a lab bridge, ironbark-node in dom0 on libvirt xen:///system
// enrolling with the controller across the bridge, and an instance run
// through the EC2 API as a Xen PV guest (Debian's cloud kernel as its
// EKI, a busybox ramdisk as its ERI) on the dom0 bridge. The guest takes
// its address from the agent's DHCP, asks the metadata service for its
// instance id and prints both with its marker, which GetConsoleOutput
// returns from xenconsoled's log; terminate leaves no domain, disk or
// console log in dom0.
func TestXenNode(t *testing.T) {
	x := startXen(t, nil)
	e, n, node := x.env, x.net, x.node
	eri := e.register(t, controller.KindRamdisk, "xenguest", lab.XenGuestInitramfs(t, x.work, x.kernel))

	id := e.run(t, e.machineImage(t, eri))
	out, err := e.ec2.DescribeInstances(context.Background(), &sdk.DescribeInstancesInput{InstanceIds: []string{id}})
	if err != nil {
		t.Fatal(err)
	}
	ip := aws.ToString(out.Reservations[0].Instances[0].PrivateIpAddress)
	if ip == "" || !n.Addr.Masked().Contains(netip.MustParseAddr(ip)) {
		t.Fatalf("private address %q outside the lab subnet %s", ip, n.Addr.Masked())
	}
	e.waitRunning(t, id, xenGuestWait)
	if got := node.Exec(t, "virsh -c xen:///system domstate "+id); !strings.Contains(got, "running") {
		t.Fatalf("libvirt in dom0 says %s is %q", id, got)
	}
	e.waitMarkerFor(t, id, lab.XenGuestMarker, xenGuestWait)
	con := e.console(t, id)
	gotIP := regexp.MustCompile(`(?m)^IP=(\S+)`).FindSubmatch(con)
	gotID := regexp.MustCompile(`(?m)^INSTANCE-ID=(\S*)`).FindSubmatch(con)
	if gotIP == nil || string(gotIP[1]) != ip || gotID == nil || string(gotID[1]) != id {
		t.Fatalf("the guest says IP=%q INSTANCE-ID=%q, DescribeInstances %s %s; console tail:\n%s",
			field(gotIP), field(gotID), ip, id, con[max(0, len(con)-3000):])
	}
	t.Logf("xen guest console:\n%s", con[max(0, len(con)-1500):])

	if _, err := e.ec2.TerminateInstances(context.Background(), &sdk.TerminateInstancesInput{InstanceIds: []string{id}}); err != nil {
		t.Fatalf("TerminateInstances: %v", err)
	}
	e.waitState(t, id, types.InstanceStateNameTerminated, xenGuestWait)
	left := node.Exec(t, "virsh -c xen:///system list --all --name | grep -c "+id+
		"; ls /var/lib/ironbark-node/instances/ /var/log/xen/console/ | grep -c "+id)
	if strings.Fields(left)[0] != "0" || strings.Fields(left)[1] != "0" {
		t.Fatalf("after terminate dom0 still has the domain or files of %s (domains, files): %q", id, left)
	}
}

// xenEnv is a Xen node in qemu on a lab network, its agent enrolled with
// the controller (listening on the lab network).
type xenEnv struct {
	*env
	net    *lab.LabNet
	node   *lab.XenNode
	work   string
	kernel *lab.Kernel // the guests' (the cloud kernel), registered as e.kernel
	agent  string      // ironbark-node's command line in dom0, once enrolled
}

// startXen starts the controller in the lab namespace and the Xen node,
// with ironbark-node in dom0 on xen:///system and xenbr0, and waits until
// the node is up and enrolled. before, when set, runs once the controller
// is up and before the node boots (cluster settings); agentArgs are more
// of ironbark-node's flags.
func startXen(t *testing.T, before func(e *env), agentArgs ...string) *xenEnv {
	t.Helper()
	lab.Require(t, "qemu-system-x86_64", "qemu-img", "busybox", "ip")
	dom0 := lab.XenDom0(t)
	k := lab.GuestKernel(t)
	n := lab.NewLabNet(t, "")
	work := t.TempDir()
	e := &env{state: filepath.Join(work, "node"), instanceSubnet: n.Addr.Masked().String()}
	e.listen = func(addr string) (ln net.Listener, err error) {
		addr = strings.Replace(addr, "127.0.0.1", n.Addr.Addr().String(), 1)
		err = n.NS.Do(func() error { ln, err = net.Listen("tcp", addr); return err })
		return ln, err
	}
	e.bin = buildAgent(t, work)
	var err error
	if e.blobs, err = blobstore.Open(filepath.Join(work, "blobs")); err != nil {
		t.Fatal(err)
	}
	e.startController(t, work, e.blobs.HandlerAt(nodeapi.PathBlobs))
	e.kernel = e.register(t, controller.KindKernel, "cloud-kernel", k.Vmlinuz)
	if before != nil {
		before(e)
	}

	nodeAddr := netip.PrefixFrom(n.Addr.Addr().Next(), n.Addr.Bits())
	agent := "ironbark-node --controller " + e.nodeURL +
		" --libvirt xen:///system --bridge xenbr0 --state-dir /var/lib/ironbark-node" +
		" --hostname xen-node --stop-timeout 2s --log-level debug" +
		// dom0's root is a small overlay; instance disks are sparse.
		" --max-disk-gib 20 " + strings.Join(agentArgs, " ")
	node := lab.StartXenNode(t, lab.XenNodeConfig{
		Dom0: dom0, Net: n, Dir: work, Addr: nodeAddr,
		Files: []initramfs.File{{Path: "usr/local/bin/ironbark-node", Mode: 0o755, Source: e.bin}},
		Run:   "exec " + agent + " --token " + e.token(t) + " 2>&1",
	})
	t.Cleanup(func() { // before the node goes down
		if t.Failed() {
			t.Logf("dom0 logs:\n%s", node.Exec(t, "tail -n 40 /var/log/libvirt/libxl/*.log /var/log/xen/*.log 2>&1"))
		}
	})
	node.WaitConsole(t, lab.Dom0Ready, xenBootWait)
	e.waitZoneFor(t, xenBootWait)
	return &xenEnv{env: e, net: n, node: node, work: work, kernel: k, agent: agent}
}

// waitRunning waits for running and fails at once on terminated.
func (e *env) waitRunning(t *testing.T, id string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		st, reason := e.instState(t, id)
		switch {
		case st == types.InstanceStateNameRunning:
			return
		case st == types.InstanceStateNameTerminated || time.Now().After(deadline):
			t.Fatalf("%s: state %s (%s), want running", id, st, reason)
		}
		time.Sleep(time.Second)
	}
}

// waitZoneFor is waitZone with a longer guard.
func (e *env) waitZoneFor(t *testing.T, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		zs, err := e.ec2.DescribeAvailabilityZones(context.Background(), &sdk.DescribeAvailabilityZonesInput{})
		if err == nil && len(zs.AvailabilityZones) == 1 && zs.AvailabilityZones[0].State == types.AvailabilityZoneStateAvailable {
			return
		}
		time.Sleep(time.Second)
	}
	t.Fatal("zone-e2e never became available: the agent in dom0 did not enroll")
}

// waitMarkerFor is waitMarker with a longer guard.
func (e *env) waitMarkerFor(t *testing.T, id, mark string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		con := e.console(t, id)
		if strings.Contains(string(con), mark) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %q not on the console; tail:\n%s", id, mark, con[max(0, len(con)-2000):])
		}
		time.Sleep(time.Second)
	}
}
