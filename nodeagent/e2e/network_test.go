package e2e

import (
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	sdk "github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"ironbark/controller"
	"ironbark/internal/lab"
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
	eri := e.register(t, controller.KindRamdisk, "netguest", netInitramfs(t, filepath.Dir(e.state)))
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

// netInitramfs is a busybox initramfs with virtio_net whose /init gets an
// address by DHCP, reports it and the metadata service's instance id on
// the serial console, and idles.
func netInitramfs(t *testing.T, dir string) string {
	t.Helper()
	k := lab.GuestKernel(t)
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
echo "INSTANCE-ID=$(wget -qO- http://169.254.169.254/latest/meta-data/instance-id)"
echo ` + netMarker + `
exec sleep 1000000
`
	return lab.DHCPGuestInitramfs(t, filepath.Join(dir, "initrd-net.gz"), k, initScript, "virtio_pci", "virtio_net")
}
