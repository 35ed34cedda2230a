package dhcp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// linkConn is the server's socket as Listen makes it: a UDP socket bound
// to the interface for requests and unicast replies, and a link-layer
// (AF_PACKET) socket for broadcast replies, which are most of them (PXE
// firmware has no address yet). A broadcast sent through the UDP socket
// is routed, passed through the IP output path and also looped back
// into the host's own stack (Linux delivers a copy of every IP broadcast
// locally); sent as a link-layer frame to ff:ff:ff:ff:ff:ff it costs
// about half as much CPU, as Kea's raw sockets do. The packet socket
// is opened with protocol 0, so it receives nothing.
type linkConn struct {
	*net.UDPConn
	link    *os.File // the packet socket, non-blocking, in Go's poller
	raw     syscall.RawConn
	ifindex int
	// src is the source address of broadcast replies (the server's IP);
	// until ServeConn sets it, broadcasts go through the UDP socket.
	src  netip.Addr
	port int // source UDP port (the server's)

	bufs sync.Pool // *[]byte frames
}

func newLinkConn(udp *net.UDPConn, iface string, port int) (*linkConn, error) {
	ifc, err := net.InterfaceByName(iface)
	if err != nil {
		return nil, fmt.Errorf("dhcp link socket on %s: %w", iface, err)
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("dhcp link socket on %s: %w", iface, err)
	}
	// Bound to the interface with protocol 0: it only sends.
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Ifindex: ifc.Index}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("dhcp link socket bind %s: %w", iface, err)
	}
	f := os.NewFile(uintptr(fd), "dhcp-link-"+iface)
	raw, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("dhcp link socket on %s: %w", iface, err)
	}
	return &linkConn{UDPConn: udp, link: f, raw: raw, ifindex: ifc.Index, port: port}, nil
}

// Close closes both sockets.
func (c *linkConn) Close() error {
	err := c.UDPConn.Close()
	c.link.Close()
	return err
}

// WriteTo sends a broadcast reply as a link-layer frame and anything else
// through the UDP socket.
func (c *linkConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok || !c.src.Is4() || !ua.IP.Equal(net.IPv4bcast) {
		return c.UDPConn.WriteTo(b, addr)
	}
	p, _ := c.bufs.Get().(*[]byte)
	if p == nil {
		p = new([]byte)
		*p = make([]byte, 0, 1500)
	}
	frame := appendUDP4((*p)[:0], c.src.As4(), [4]byte{255, 255, 255, 255}, uint16(c.port), uint16(ua.Port), b)
	to := &unix.SockaddrLinklayer{Ifindex: c.ifindex, Protocol: htons(unix.ETH_P_IP), Halen: 6,
		Addr: [8]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}}
	var err error
	// Through the poller: a full send queue waits (EAGAIN), and a socket
	// closed meanwhile is an error, never another file's descriptor.
	if werr := c.raw.Write(func(fd uintptr) bool {
		err = unix.Sendto(int(fd), frame, 0, to)
		return err != unix.EAGAIN
	}); werr != nil {
		err = werr
	}
	*p = frame
	c.bufs.Put(p)
	if errors.Is(err, unix.EMSGSIZE) {
		// Larger than the interface's MTU: the IP layer fragments it.
		return c.UDPConn.WriteTo(b, addr)
	}
	if err != nil {
		return 0, fmt.Errorf("dhcp broadcast: %w", err)
	}
	return len(b), nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

const (
	ipv4HeaderLen = 20
	udpHeaderLen  = 8
)

// appendUDP4 appends an IPv4 header (no options, TTL 64, not
// fragmented), a UDP header and payload to dst, with both checksums.
func appendUDP4(dst []byte, src, to [4]byte, sport, dport uint16, payload []byte) []byte {
	total := ipv4HeaderLen + udpHeaderLen + len(payload)
	start := len(dst)
	dst = append(dst,
		0x45, 0, byte(total>>8), byte(total), // version 4, IHL 5; length
		0, 0, 0, 0, // identification; flags and fragment offset
		64, unix.IPPROTO_UDP, 0, 0) // TTL, protocol, checksum (below)
	dst = append(dst, src[:]...)
	dst = append(dst, to[:]...)
	ip := dst[start:]
	binary.BigEndian.PutUint16(ip[10:], ^fold(sum(0, ip[:ipv4HeaderLen])))

	ulen := udpHeaderLen + len(payload)
	u := len(dst)
	dst = binary.BigEndian.AppendUint16(dst, sport)
	dst = binary.BigEndian.AppendUint16(dst, dport)
	dst = binary.BigEndian.AppendUint16(dst, uint16(ulen))
	dst = append(dst, 0, 0)
	dst = append(dst, payload...)
	// The pseudo-header: addresses, protocol, UDP length.
	s := sum(0, src[:])
	s = sum(s, to[:])
	s += unix.IPPROTO_UDP + uint32(ulen)
	s = sum(s, dst[u:])
	c := ^fold(s)
	if c == 0 {
		c = 0xffff // 0 means "no checksum" in UDP over IPv4
	}
	binary.BigEndian.PutUint16(dst[u+6:], c)
	return dst
}

// sum adds b as big-endian 16-bit words to s (an odd last byte is padded
// with zero), the Internet checksum before folding.
func sum(s uint32, b []byte) uint32 {
	for len(b) >= 2 {
		s += uint32(b[0])<<8 | uint32(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		s += uint32(b[0]) << 8
	}
	return s
}

func fold(s uint32) uint16 {
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return uint16(s)
}
