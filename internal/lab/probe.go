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

// Ping sends one ICMP echo request from inside the namespace to addr and
// waits up to wait for the reply.
func (ns *NetNS) Ping(addr netip.Addr, wait time.Duration) error {
	var c net.PacketConn
	if err := ns.Do(func() (err error) { c, err = net.ListenPacket("ip4:icmp", "0.0.0.0"); return err }); err != nil {
		return err
	}
	defer c.Close()
	id := uint16(time.Now().UnixNano())
	req := []byte{8, 0, 0, 0, byte(id >> 8), byte(id), 0, 1, 'i', 'r', 'o', 'n'}
	sum := icmpChecksum(req)
	req[2], req[3] = byte(sum>>8), byte(sum)
	if _, err := c.WriteTo(req, &net.IPAddr{IP: addr.AsSlice()}); err != nil {
		return err
	}
	_ = c.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 1500)
	for {
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			return err
		}
		// The raw socket sees every ICMP message: wait for our reply.
		if ip, ok := from.(*net.IPAddr); ok && ip.IP.Equal(addr.AsSlice()) && n >= 8 && buf[0] == 0 &&
			buf[4] == byte(id>>8) && buf[5] == byte(id) {
			return nil
		}
	}
}

func icmpChecksum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}
