package nodeagent

import (
	"fmt"
	"net"

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
		// The bridge must be this namespace's: a table for a bridge
		// elsewhere would filter nothing.
		if _, err := net.InterfaceByName(a.cfg.Bridge); err != nil {
			fail(fmt.Errorf("bridge %s: %w", a.cfg.Bridge, err))
			return
		}
		fw, err := secgroups.New(a.cfg.Bridge, 0)
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
