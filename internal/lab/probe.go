package lab

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"
	"unsafe"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
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

// TaggedARP sends, from the namespace's interface ifname, an ARP request
// for target from sender (the interface's MAC), in an 802.1Q frame with
// tag vlan (0: untagged), and collects for wait the ARP replies from
// target that arrive on ifname: it returns their VLAN tags (0 for an
// untagged one), so a test sees on which VLAN an address answers.
func (ns *NetNS) TaggedARP(ifname string, vlan int, sender, target netip.Addr, wait time.Duration) ([]int, error) {
	l, err := ns.nl.LinkByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("link %s: %w", ifname, err)
	}
	mac, idx := l.Attrs().HardwareAddr, l.Attrs().Index
	if len(mac) != 6 || !sender.Is4() || !target.Is4() {
		return nil, fmt.Errorf("tagged ARP: %s has MAC %v; sender %s, target %s must be IPv4", ifname, mac, sender, target)
	}
	var fd int
	if err := ns.Do(func() (err error) {
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		return err
	}); err != nil {
		return nil, fmt.Errorf("packet socket in %s: %w", ns.Name, err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: idx}); err != nil {
		return nil, fmt.Errorf("bind to %s: %w", ifname, err)
	}
	// The kernel hands a received frame's tag over beside it, not in it.
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_AUXDATA, 1); err != nil {
		return nil, fmt.Errorf("PACKET_AUXDATA: %w", err)
	}
	tv := unix.NsecToTimeval((200 * time.Millisecond).Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return nil, err
	}
	f := append([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, mac...)
	if vlan > 0 {
		f = append(f, 0x81, 0x00, byte(vlan>>8)&0x0f, byte(vlan))
	}
	f = append(f, 0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1)
	f = append(f, mac...)
	f = append(f, sender.AsSlice()...)
	f = append(f, 0, 0, 0, 0, 0, 0)
	f = append(f, target.AsSlice()...)
	for len(f) < 64 {
		f = append(f, 0)
	}
	to := &unix.SockaddrLinklayer{Ifindex: idx, Halen: 6}
	copy(to.Addr[:], f[:6])
	if err := unix.Sendto(fd, f, 0, to); err != nil {
		return nil, fmt.Errorf("send on %s: %w", ifname, err)
	}
	var tags []int
	buf, oob := make([]byte, 2048), make([]byte, 256)
	for deadline := time.Now().Add(wait); time.Now().Before(deadline); {
		n, oobn, _, from, err := unix.Recvmsg(fd, buf, oob, 0)
		if err != nil {
			continue // the receive timeout: look at the deadline again
		}
		if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
			continue
		}
		fr, tag := buf[:n], 0
		cms, _ := unix.ParseSocketControlMessage(oob[:oobn])
		for _, c := range cms {
			if c.Header.Level == unix.SOL_PACKET && c.Header.Type == unix.PACKET_AUXDATA && len(c.Data) >= int(unsafe.Sizeof(unix.TpacketAuxdata{})) {
				aux := (*unix.TpacketAuxdata)(unsafe.Pointer(&c.Data[0]))
				if aux.Status&unix.TP_STATUS_VLAN_VALID != 0 {
					tag = int(aux.Vlan_tci & 0x0fff)
				}
			}
		}
		if len(fr) >= 18 && fr[12] == 0x81 && fr[13] == 0x00 { // a tag left in the frame
			tag = int(fr[14]&0x0f)<<8 | int(fr[15])
			fr = append(fr[:12:12], fr[16:]...)
		}
		// An ARP reply (op 2) whose sender protocol address is target.
		if len(fr) >= 42 && fr[12] == 0x08 && fr[13] == 0x06 && fr[21] == 2 && netip.AddrFrom4([4]byte(fr[28:32])) == target {
			tags = append(tags, tag)
		}
	}
	return tags, nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
