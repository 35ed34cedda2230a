package lab

import (
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
)

// ServeTCP listens on host:port inside the namespace for each port, and
// accepts and closes every connection (a peer that answers a SYN), until
// the test ends.
func (ns *NetNS) ServeTCP(t T, host string, ports ...int) {
	t.Helper()
	for _, p := range ports {
		var ln net.Listener
		if err := ns.Do(func() (err error) {
			ln, err = net.Listen("tcp4", net.JoinHostPort(host, strconv.Itoa(p)))
			return err
		}); err != nil {
			t.Fatalf("listen on %s:%d in %s: %v", host, p, ns.Name, err)
		}
		var wg sync.WaitGroup
		wg.Go(func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		})
		t.Cleanup(func() { ln.Close(); wg.Wait() })
	}
}

// ConnectTCP makes a TCP connection from inside the namespace to
// addr:port and closes it. A firewall that drops the SYN shows as a
// timeout error after wait.
func (ns *NetNS) ConnectTCP(addr netip.Addr, port int, wait time.Duration) error {
	return ns.Do(func() error {
		d := net.Dialer{Timeout: wait}
		c, err := d.Dial("tcp4", net.JoinHostPort(addr.String(), strconv.Itoa(port)))
		if err == nil {
			c.Close()
		}
		return err
	})
}

// Route adds a route to dst through the gateway via in the namespace.
func (ns *NetNS) Route(t T, dst netip.Prefix, via netip.Addr) {
	t.Helper()
	if err := ns.nl.RouteAdd(&netlink.Route{Dst: &net.IPNet{IP: dst.Addr().AsSlice(), Mask: net.CIDRMask(dst.Bits(), 32)},
		Gw: via.AsSlice()}); err != nil {
		t.Fatalf("route %s via %s in %s: %v", dst, via, ns.Name, err)
	}
}
