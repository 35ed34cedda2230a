package nodeagent

import (
	"fmt"
	"maps"
	"slices"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"ironbark/internal/nodeapi"
	"ironbark/nodeagent/secgroups"
)

// firewall is the agent's security group enforcement (nodeagent/secgroups)
// on its bridge: made on the first sync (retried on later ones while the
// kernel refuses), then brought up to date with every desired state the
// controller sends. Until the first desired state arrives a restarted
// agent leaves the table as its predecessor left it.
type firewall struct {
	fw     *secgroups.Firewall
	failed string // the last error logged, to log each error once
}

// syncSecurityGroups applies the desired instances' security groups. Called
// from followDesired (a change) and the reconcile loop (retries), never
// concurrently with itself for one agent (a.fwMu).
func (a *Agent) syncSecurityGroups() {
	if a.cfg.Bridge == "" || a.cfg.NoSecurityGroups {
		return
	}
	a.fwMu.Lock()
	defer a.fwMu.Unlock()
	a.mu.Lock()
	have := a.haveDesired
	specs := append([]nodeapi.InstanceSpec(nil), a.desired...)
	groups := a.desiredGroups
	a.mu.Unlock()
	if !have {
		return
	}
	fail := func(err error) {
		if msg := err.Error(); msg != a.fw.failed {
			a.fw.failed = msg
			a.log.Error("security groups not enforced", "bridge", a.cfg.Bridge, "err", err)
		}
	}
	if a.fw.fw == nil {
		fw, err := a.newFirewall()
		if err != nil {
			fail(err)
			return
		}
		a.fw.fw = fw
	}
	rs, err := secgroups.Build(secgroups.Instances(specs), groups)
	if err != nil {
		fail(err)
		return
	}
	// MANAGED mode's VLAN bridges: the same chains filter their ports.
	vlans, _ := desiredVLANs(specs, nil)
	for _, id := range slices.Sorted(maps.Keys(vlans)) {
		rs.Bridges = append(rs.Bridges, VLANBridge(id))
	}
	changed, err := a.fw.fw.Apply(rs)
	if err != nil {
		fail(err)
		return
	}
	if a.fw.failed != "" {
		a.log.Info("security groups enforced again", "bridge", a.cfg.Bridge)
		a.fw.failed = ""
	}
	if changed {
		a.log.Debug("security groups applied", "bridge", a.cfg.Bridge, "table", secgroups.TableName(a.cfg.Bridge),
			"instances", len(rs.In), "chains", len(rs.Chains))
	}
}

// newFirewall opens the firewall in the bridge's namespace (Config.NetNS,
// else the agent's own). The bridge must be there: a table for a bridge
// elsewhere would filter nothing.
func (a *Agent) newFirewall() (*secgroups.Firewall, error) {
	h := netns.None()
	nsfd := 0
	if a.cfg.NetNS != "" {
		fd, err := unix.Open(a.cfg.NetNS, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("network namespace %s: %w", a.cfg.NetNS, err)
		}
		// secgroups.New keeps a descriptor of its own.
		defer unix.Close(fd)
		nsfd, h = fd, netns.NsHandle(fd)
	}
	nl, err := netlink.NewHandleAt(h)
	if err != nil {
		return nil, fmt.Errorf("netlink: %w", err)
	}
	defer nl.Close()
	if _, err := nl.LinkByName(a.cfg.Bridge); err != nil {
		return nil, fmt.Errorf("bridge %s: %w", a.cfg.Bridge, err)
	}
	return secgroups.New(a.cfg.Bridge, nsfd)
}
