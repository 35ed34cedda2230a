package nodeagent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"ironbark/internal/nodeapi"
)

// reconcile makes libvirt match the desired instances: launch, start, stop,
// reboot and terminate, and remove what the controller no longer wants.
func (a *Agent) reconcile(ctx context.Context) {
	if ctx.Err() != nil {
		return
	}
	// libvirt is called without the lock (heartbeats, DHCP and metadata
	// take it). A launch, stop or removal that finishes while the domain
	// list is read bumps gen; then the list is read again, so no snapshot
	// misses a domain whose launch looks done.
	_ = a.updateCapacity() // unreachable: owned below says so
	var doms map[string]domState
	var err error
	for try := 0; ; try++ {
		a.mu.Lock()
		gen := a.gen
		a.mu.Unlock()
		doms, err = a.hv.owned(a.id.NodeID)
		a.mu.Lock()
		if err != nil || a.gen == gen {
			break
		}
		a.mu.Unlock()
		if try == 3 {
			a.kick() // busy: the next round takes it
			return
		}
	}
	defer a.mu.Unlock()
	if err != nil {
		a.hypervisorDown(err)
		return
	}
	if !a.hvDownSince.IsZero() {
		a.log.Info("hypervisor reachable again", "uri", a.cfg.LibvirtURI)
		a.hvDownSince = time.Time{}
	}
	changed := false
	want := map[string]bool{}
	for _, s := range a.desired {
		want[s.InstanceID] = true
		in := a.insts[s.InstanceID]
		if in == nil {
			in = &inst{state: nodeapi.StatePending}
			a.insts[s.InstanceID] = in
		}
		before, reason, serial := in.state, in.reason, in.rebootSerial
		a.apply(ctx, s, in, doms)
		changed = changed || in.state != before || in.reason != reason || in.rebootSerial != serial
	}
	// New console output goes out with the next heartbeat, now.
	for id, in := range a.insts {
		if fi, err := os.Stat(a.consolePath(id)); err == nil {
			key := fmt.Sprintf("%d/%d", fi.Size(), fi.ModTime().UnixNano())
			if key != in.consoleSeen {
				in.consoleSeen = key
				changed = true
			}
		}
	}
	// Re-adopted domains are reported before the first desired list
	// arrives; nothing is removed until the controller has spoken.
	for id, d := range doms {
		if a.insts[id] == nil && !want[id] {
			a.insts[id] = &inst{state: stateOf(d), rebootSerial: d.tag.RebootSerial, seenRunning: d.active()}
			changed = true
		}
	}
	if !a.haveDesired {
		if changed {
			a.kickHeartbeat()
		}
		return
	}
	for id, in := range a.insts {
		if want[id] || in.launching || in.busy {
			continue
		}
		if _, ok := doms[id]; ok {
			a.log.Info("removing an instance the controller no longer wants", "instance", id)
		}
		a.background(in, func() error {
			if _, ok := doms[id]; ok {
				if err := a.hv.remove(id); err != nil {
					return fmt.Errorf("remove instance: %w", err)
				}
			}
			return a.removeInstanceFiles(id)
		}, func(err error) {
			if err != nil {
				a.log.Error("remove instance", "instance", id, "err", err)
				return
			}
			if a.insts[id] == in {
				delete(a.insts, id)
				a.gone[id] = true
			}
		})
	}
	// Leftovers of launches killed before their domain was defined, and
	// failure records of instances the controller has let go.
	for _, sub := range []string{"instances", "failed"} {
		ents, _ := os.ReadDir(filepath.Join(a.cfg.StateDir, sub))
		for _, e := range ents {
			id := e.Name()
			if want[id] || a.insts[id] != nil {
				continue
			}
			if _, ok := doms[id]; ok {
				continue
			}
			os.RemoveAll(filepath.Join(a.cfg.StateDir, sub, id))
		}
	}
	if changed {
		a.kickHeartbeat()
	}
}

func stateOf(d domState) string {
	if d.active() {
		return nodeapi.StateRunning
	}
	return nodeapi.StateStopped
}

// hypervisorDown handles an unreachable libvirt: running instances keep
// their last state (qemu outlives libvirtd); launches wait for it up to the
// grace period and then fail with the reason.
func (a *Agent) hypervisorDown(err error) {
	now := time.Now()
	if a.hvDownSince.IsZero() {
		a.hvDownSince = now
		a.log.Error("hypervisor unreachable", "uri", a.cfg.LibvirtURI, "err", err)
	}
	for _, s := range a.desired {
		if a.insts[s.InstanceID] == nil {
			a.insts[s.InstanceID] = &inst{state: nodeapi.StatePending}
			a.kickHeartbeat()
		}
	}
	if now.Sub(a.hvDownSince) < a.cfg.HypervisorGrace {
		return
	}
	for _, s := range a.desired {
		in := a.insts[s.InstanceID]
		if in.state == nodeapi.StatePending && !in.launching && s.Desired == nodeapi.StateRunning {
			a.fail(s.InstanceID, in, fmt.Errorf("%w: %v", errHypervisor, err))
			a.kickHeartbeat()
		}
	}
}

// apply moves one instance toward its desired state. Called with a.mu held;
// slow work (launch, stop) runs in goroutines that kick reconcile when done.
func (a *Agent) apply(ctx context.Context, s nodeapi.InstanceSpec, in *inst, doms map[string]domState) {
	id := s.InstanceID
	d, exists := doms[id]
	if in.busy {
		return // a start, reboot or removal is under way
	}
	if reason, err := os.ReadFile(a.failedPath(id)); err == nil {
		// Failed here before: stays terminated (and cleaned) until the
		// controller lets it go.
		in.state, in.reason = nodeapi.StateTerminated, string(reason)
		if exists {
			a.background(in, func() error { return a.hv.remove(id) }, func(error) {})
		}
		os.RemoveAll(a.instDir(id))
		return
	}
	if s.Desired != nodeapi.StateRunning {
		in.guestStopped = false
	}
	switch s.Desired {
	case nodeapi.StateRunning:
		switch {
		case in.launching:
			in.state = nodeapi.StatePending
		case !exists:
			if time.Now().Before(in.retryAt) {
				return
			}
			in.state, in.reason = nodeapi.StatePending, ""
			a.startLaunch(ctx, s, in)
		case d.active():
			in.state, in.reason, in.seenRunning, in.guestStopped = nodeapi.StateRunning, "", true, false
			in.rebootSerial = d.tag.RebootSerial
			if s.RebootSerial > d.tag.RebootSerial {
				tag := d.tag
				tag.RebootSerial = s.RebootSerial
				a.background(in, func() error { return a.hv.reboot(id, tag) }, func(err error) {
					if err != nil {
						a.log.Error("reboot", "instance", id, "err", err)
						return
					}
					a.log.Info("rebooted", "instance", id, "serial", tag.RebootSerial)
					in.rebootSerial = tag.RebootSerial
				})
			}
		case in.stopping:
			in.state = nodeapi.StateStopping
		default: // defined, not running
			if in.seenRunning && !in.guestStopped {
				a.log.Info("guest powered off", "instance", id)
				in.guestStopped = true
			}
			if in.guestStopped {
				in.state, in.reason = nodeapi.StateStopped, ReasonGuestShutdown
				return
			}
			// Defined by a launch that was cut short, or started again
			// after StopInstances.
			if time.Now().Before(in.retryAt) {
				return
			}
			in.attempts++
			a.background(in, func() error { return a.hv.start(id) }, func(err error) {
				if err != nil {
					a.launchFailed(id, in, fmt.Errorf("start domain: %w", err))
					return
				}
				a.log.Info("domain started", "instance", id)
				in.state, in.reason, in.seenRunning, in.attempts = nodeapi.StateRunning, "", true, 0
			})
		}
	case nodeapi.StateStopped:
		switch {
		case in.launching:
			in.state = nodeapi.StatePending
		case !exists:
			in.state = nodeapi.StateStopped
		case in.stopping:
			in.state = nodeapi.StateStopping
		case d.active():
			in.state, in.stopping = nodeapi.StateStopping, true
			a.wg.Add(1)
			go func() {
				defer a.wg.Done()
				err := a.hv.stop(id, a.cfg.StopTimeout)
				a.mu.Lock()
				in.stopping, in.seenRunning = false, false
				a.gen++
				a.mu.Unlock()
				if err != nil {
					a.log.Error("stop", "instance", id, "err", err)
				}
				a.kick()
			}()
		default:
			in.state, in.seenRunning = nodeapi.StateStopped, false
		}
	case nodeapi.StateTerminated:
		if in.launching {
			in.cancel()
			in.state = nodeapi.StateShuttingDown
			return
		}
		if in.removing {
			in.state = nodeapi.StateShuttingDown
			return
		}
		if _, err := os.Stat(a.instDir(id)); exists || err == nil {
			// Destroying a domain can take seconds (libvirt waits for
			// qemu to exit): terminations run side by side.
			in.state, in.removing = nodeapi.StateShuttingDown, true
			a.wg.Add(1)
			go func() {
				defer a.wg.Done()
				err := a.hv.remove(id)
				if err == nil {
					err = a.removeInstanceFiles(id)
				}
				if err != nil {
					a.log.Error("terminate", "instance", id, "err", err)
				}
				a.mu.Lock()
				in.removing = false
				a.gen++
				a.mu.Unlock()
				a.kick()
			}()
			return
		}
		if in.state != nodeapi.StateTerminated {
			a.log.Info("terminated", "instance", id)
		}
		in.state = nodeapi.StateTerminated
		if in.reason == "" {
			in.reason = ReasonUserTerminate
		}
	default:
		a.log.Warn("unknown desired state", "instance", id, "desired", s.Desired)
	}
}

// startLaunch runs a launch in the background.
func (a *Agent) startLaunch(ctx context.Context, s nodeapi.InstanceSpec, in *inst) {
	lctx, cancel := context.WithCancel(ctx)
	in.launching, in.cancel = true, cancel
	in.attempts++
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		defer cancel()
		start := time.Now()
		err := a.launch(lctx, s)
		a.mu.Lock()
		in.launching = false
		a.gen++
		switch {
		case err == nil:
			a.log.Info("instance running", "instance", s.InstanceID, "took", time.Since(start).Round(time.Millisecond))
			in.state, in.reason, in.seenRunning, in.attempts = nodeapi.StateRunning, "", true, 0
			in.fetchFailing = time.Time{}
		case lctx.Err() != nil:
			// Terminated meanwhile, or the agent is stopping: reconcile
			// (now or after restart) finishes the job.
			a.log.Info("launch interrupted", "instance", s.InstanceID)
		default:
			a.launchFailed(s.InstanceID, in, err)
		}
		a.mu.Unlock()
		a.kick()
		a.kickHeartbeat()
	}()
}

// launchFailed retries transient failures and fails the rest. a.mu held.
func (a *Agent) launchFailed(id string, in *inst, err error) {
	retry := (errors.Is(err, errHypervisor) || errors.Is(err, errXenStart)) && in.attempts < a.cfg.LaunchAttempts
	if isTransientFetch(err) {
		// An unreachable image source is usually the controller being
		// restarted: wait for it (bounded), do not spend the attempts.
		if in.fetchFailing.IsZero() {
			in.fetchFailing = time.Now()
		}
		retry = time.Since(in.fetchFailing) < a.cfg.FetchPatience
	}
	if retry {
		in.retryAt = time.Now().Add(min(time.Duration(in.attempts)*2*time.Second, 15*time.Second))
		in.state, in.reason = nodeapi.StatePending, "retrying: "+err.Error()
		a.log.Warn("launch failed, will retry", "instance", id, "attempt", in.attempts, "err", err)
		return
	}
	a.fail(id, in, err)
}

// fail records a launch failure: the instance is cleaned up and reported
// terminated with the reason, across agent restarts. a.mu held.
func (a *Agent) fail(id string, in *inst, err error) {
	reason := "Server.InternalError: " + err.Error()
	a.log.Error("launch failed", "instance", id, "err", err)
	// The domain (if any) goes in the background: a.mu is held.
	a.background(in, func() error { return a.hv.remove(id) }, func(error) {})
	os.RemoveAll(a.instDir(id))
	if werr := os.WriteFile(a.failedPath(id), []byte(reason), 0o600); werr != nil {
		a.log.Error("record failure", "instance", id, "err", werr)
	}
	in.state, in.reason = nodeapi.StateTerminated, reason
}

// background runs fn, libvirt work for one instance, without a.mu, marking
// the instance busy meanwhile; then runs done(err) with a.mu held and
// kicks reconcile. Called with a.mu held.
func (a *Agent) background(in *inst, fn func() error, done func(error)) {
	in.busy = true
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		err := fn()
		a.mu.Lock()
		in.busy = false
		a.gen++
		done(err)
		a.mu.Unlock()
		a.kick()
		a.kickHeartbeat()
	}()
}
