package nodeagent

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"libvirt.org/go/libvirt"
)

// errHypervisor marks a failure to reach libvirt (libvirtd down or
// restarting): launches are retried, not failed, while it lasts.
var errHypervisor = errors.New("hypervisor unavailable")

// hypervisor is the agent's libvirt connection, reopened after libvirtd
// goes away. Every call is bounded by timeout: libvirt's client has no
// context, so a call runs on its own goroutine and a caller that waited
// timeout gets errHypervisor. While a timed-out call is still stuck (a
// hung libvirtd), further calls fail at once instead of piling up; the
// first to return clears the way.
type hypervisor struct {
	uri     string
	timeout time.Duration

	mu   sync.Mutex
	conn *libvirt.Connect

	stuckMu sync.Mutex
	stuck   int    // timed-out calls that have not returned yet
	stuckOp string // what the first of them was doing
}

// call runs fn, a libvirt call, within h.timeout.
func (h *hypervisor) call(op string, fn func() error) error {
	_, err := callValue(h, op, func() (struct{}, error) { return struct{}{}, fn() })
	return err
}

type result[T any] struct {
	v   T
	err error
}

// callValue runs fn, a libvirt call, within h.timeout and returns what it
// returned. fn's result travels by channel: a call that times out keeps
// running on its own and must not write anything the caller reads.
func callValue[T any](h *hypervisor, op string, fn func() (T, error)) (T, error) {
	var zero T
	h.stuckMu.Lock()
	if h.stuck > 0 {
		what := h.stuckOp
		h.stuckMu.Unlock()
		return zero, fmt.Errorf("%w: libvirt is not answering (%s has not returned after %v)", errHypervisor, what, h.timeout)
	}
	h.stuckMu.Unlock()
	done := make(chan result[T], 1)
	go func() {
		v, err := fn()
		done <- result[T]{v, err}
	}()
	t := time.NewTimer(h.timeout)
	defer t.Stop()
	select {
	case r := <-done:
		return r.v, r.err
	case <-t.C:
	}
	h.stuckMu.Lock()
	h.stuck++
	if h.stuck == 1 {
		h.stuckOp = op
	}
	h.stuckMu.Unlock()
	go func() {
		<-done
		h.stuckMu.Lock()
		h.stuck--
		h.stuckMu.Unlock()
	}()
	return zero, fmt.Errorf("%w: %s: no answer from libvirt within %v", errHypervisor, op, h.timeout)
}

// domState is what libvirt says about one of our domains.
type domState struct {
	tag   instanceTag
	state libvirt.DomainState
}

func (s domState) active() bool {
	switch s.state {
	case libvirt.DOMAIN_RUNNING, libvirt.DOMAIN_BLOCKED, libvirt.DOMAIN_PAUSED, libvirt.DOMAIN_PMSUSPENDED:
		return true
	}
	return false
}

func (h *hypervisor) connect() (*libvirt.Connect, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.conn != nil {
		if ok, err := h.conn.IsAlive(); err == nil && ok {
			return h.conn, nil
		}
		h.conn.Close()
		h.conn = nil
	}
	c, err := libvirt.NewConnect(h.uri)
	if err != nil {
		return nil, fmt.Errorf("%w: connect %s: %v", errHypervisor, h.uri, err)
	}
	h.conn = c
	return c, nil
}

// check turns a libvirt error into errHypervisor when the connection is
// gone (libvirtd down or restarted), so callers know to retry; any other
// error (a domain that cannot start, say) is returned as it is.
func (h *hypervisor) check(err error) error {
	if err == nil {
		return nil
	}
	var le libvirt.Error
	if !errors.As(err, &le) {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	dead := le.Code == libvirt.ERR_NO_CONNECT || le.Code == libvirt.ERR_INVALID_CONN
	if h.conn != nil {
		if ok, aerr := h.conn.IsAlive(); aerr != nil || !ok {
			dead = true
		}
	}
	if !dead {
		return err
	}
	if h.conn != nil {
		h.conn.Close()
		h.conn = nil
	}
	return fmt.Errorf("%w: %v", errHypervisor, err)
}

func (h *hypervisor) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.conn != nil {
		h.conn.Close()
		h.conn = nil
	}
}

// capacity is the host's cores and memory.
func (h *hypervisor) capacity() (cores, memoryMiB int, err error) {
	v, err := callValue(h, "node info", func() ([2]int, error) {
		c, err := h.connect()
		if err != nil {
			return [2]int{}, err
		}
		ni, err := c.GetNodeInfo()
		if err != nil {
			return [2]int{}, h.check(err)
		}
		return [2]int{int(ni.Cpus), int(ni.Memory / 1024)}, nil
	})
	return v[0], v[1], err
}

// owned lists the domains tagged as instances of node, by instance ID.
// Domains of other nodes sharing the libvirtd are left out; so are
// untagged ones.
func (h *hypervisor) owned(node string) (map[string]domState, error) {
	return callValue(h, "list domains", func() (map[string]domState, error) { return h.ownedNow(node) })
}

func (h *hypervisor) ownedNow(node string) (map[string]domState, error) {
	c, err := h.connect()
	if err != nil {
		return nil, err
	}
	doms, err := c.ListAllDomains(0)
	if err != nil {
		return nil, h.check(err)
	}
	out := map[string]domState{}
	for i := range doms {
		d := &doms[i]
		meta, err := d.GetMetadata(libvirt.DOMAIN_METADATA_ELEMENT, MetadataNS, libvirt.DOMAIN_AFFECT_CURRENT)
		if err == nil {
			if tag, perr := parseTag(meta); perr == nil && (tag.Node == node || tag.Node == "") {
				if st, _, serr := d.GetState(); serr == nil {
					out[tag.ID] = domState{tag: tag, state: st}
				}
			}
		}
		d.Free()
	}
	return out, nil
}

// withDomain runs fn on the domain named id; a missing domain is not an
// error when missingOK.
func (h *hypervisor) withDomain(id string, missingOK bool, fn func(*libvirt.Domain) error) error {
	return h.call("domain "+id, func() error { return h.withDomainNow(id, missingOK, fn) })
}

func (h *hypervisor) withDomainNow(id string, missingOK bool, fn func(*libvirt.Domain) error) error {
	c, err := h.connect()
	if err != nil {
		return err
	}
	d, err := c.LookupDomainByName(id)
	if err != nil {
		var le libvirt.Error
		if errors.As(err, &le) && le.Code == libvirt.ERR_NO_DOMAIN && missingOK {
			return nil
		}
		return h.check(err)
	}
	defer d.Free()
	return h.check(fn(d))
}

func (h *hypervisor) define(xml string) error {
	return h.call("define domain", func() error {
		c, err := h.connect()
		if err != nil {
			return err
		}
		d, err := c.DomainDefineXML(xml)
		if err != nil {
			return h.check(err)
		}
		d.Free()
		return nil
	})
}

func (h *hypervisor) start(id string) error {
	return h.withDomain(id, false, func(d *libvirt.Domain) error { return d.Create() })
}

// remove destroys (if running) and undefines the domain.
func (h *hypervisor) remove(id string) error {
	return h.withDomain(id, true, func(d *libvirt.Domain) error {
		if active, err := d.IsActive(); err == nil && active {
			if err := d.Destroy(); err != nil {
				return fmt.Errorf("destroy %s: %w", id, err)
			}
		}
		if err := d.Undefine(); err != nil {
			return fmt.Errorf("undefine %s: %w", id, err)
		}
		return nil
	})
}

// stop asks the guest to power off and pulls the plug after timeout. Each
// step is its own bounded call.
func (h *hypervisor) stop(id string, timeout time.Duration) error {
	active := func() (bool, error) {
		return callValue(h, "domain "+id, func() (bool, error) {
			var on bool
			err := h.withDomainNow(id, true, func(d *libvirt.Domain) error {
				var err error
				on, err = d.IsActive()
				return err
			})
			return on, err
		})
	}
	if on, err := active(); err != nil || !on {
		return err
	}
	// Guests without ACPI ignore it; the destroy below does not wait for them.
	if err := h.withDomain(id, true, func(d *libvirt.Domain) error { _ = d.Shutdown(); return nil }); err != nil {
		return err
	}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if on, err := active(); err != nil || !on {
			return err
		}
		time.Sleep(250 * time.Millisecond)
	}
	return h.withDomain(id, true, func(d *libvirt.Domain) error {
		if on, err := d.IsActive(); err != nil || !on {
			return err
		}
		return d.Destroy()
	})
}

// reboot resets the guest (EC2's reboot must work on guests that ignore
// ACPI) and records the serial it was done for.
func (h *hypervisor) reboot(id string, tag instanceTag) error {
	return h.withDomain(id, false, func(d *libvirt.Domain) error {
		if err := d.Reset(0); err != nil {
			return fmt.Errorf("reset %s: %w", id, err)
		}
		return d.SetMetadata(libvirt.DOMAIN_METADATA_ELEMENT, tag.plainXML(), metadataPrefix, MetadataNS,
			libvirt.DOMAIN_AFFECT_LIVE|libvirt.DOMAIN_AFFECT_CONFIG)
	})
}
