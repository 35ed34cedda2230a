package lab_test

import (
	"net/netip"
	"testing"
	"time"

	"ironbark/internal/lab"
)

// TestXenDom0 boots Xen with a PV dom0 under TCG and checks that
// libvirt's Xen driver answers in dom0: the node the compute appliance
// makes, minus the agent.
func TestXenDom0(t *testing.T) {
	d := lab.XenDom0(t)
	n := lab.NewLabNet(t, "")
	node := lab.StartXenNode(t, lab.XenNodeConfig{
		Dom0: d, Net: n, Dir: t.TempDir(),
		Addr: netip.PrefixFrom(n.Addr.Addr().Next(), n.Addr.Bits()),
		Run:  "virsh -c xen:///system nodeinfo | sed 's/^/NODEINFO /'; ping -c 1 -W 5 " + n.Addr.Addr().String() + " >/dev/null && echo LABNET-REACHABLE",
	})
	node.WaitConsole(t, lab.Dom0Ready, 4*time.Minute)
	node.WaitConsole(t, "NODEINFO CPU model", time.Minute)
	node.WaitConsole(t, "LABNET-REACHABLE", time.Minute)
}
