package dhcp

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/net/ipv4"

	"ironbark/internal/lab"
)

// TestAppendUDP4 checks the broadcast frame's headers: fields, lengths
// and both checksums (a header or datagram with its checksum in place
// sums to 0xffff), for even and odd payload lengths.
func TestAppendUDP4(t *testing.T) {
	src, dst := [4]byte{10, 1, 0, 1}, [4]byte{255, 255, 255, 255}
	for _, payload := range [][]byte{[]byte("even"), []byte("odd"), bytes.Repeat([]byte{0xff}, 301)} {
		pkt := appendUDP4([]byte("keep"), src, dst, 67, 68, payload)
		if string(pkt[:4]) != "keep" {
			t.Fatal("existing bytes overwritten")
		}
		pkt = pkt[4:]
		h, err := ipv4.ParseHeader(pkt)
		if err != nil {
			t.Fatal(err)
		}
		if h.Version != 4 || h.Len != 20 || h.TotalLen != len(pkt) || h.TTL != 64 || h.Protocol != 17 ||
			!h.Src.Equal(src[:]) || !h.Dst.Equal(dst[:]) || h.Flags != 0 || h.FragOff != 0 {
			t.Fatalf("ip header %+v", h)
		}
		if s := fold(sum(0, pkt[:20])); s != 0xffff {
			t.Fatalf("ip checksum: header sums to %#x", s)
		}
		u := pkt[20:]
		if sp, dp, l := binary.BigEndian.Uint16(u), binary.BigEndian.Uint16(u[2:]), binary.BigEndian.Uint16(u[4:]); sp != 67 || dp != 68 || int(l) != 8+len(payload) {
			t.Fatalf("udp header %d %d %d", sp, dp, l)
		}
		ps := sum(sum(0, src[:]), dst[:]) + 17 + uint32(len(u))
		if s := fold(sum(ps, u)); s != 0xffff {
			t.Fatalf("udp checksum: datagram sums to %#x", s)
		}
		if !bytes.Equal(u[8:], payload) {
			t.Fatal("payload changed")
		}
	}
}

// TestLinkConnBroadcast sends a broadcast reply through the link-layer
// socket Listen opens and receives it on an ordinary UDP socket behind
// the bridge: the kernel there accepts it only with valid headers and
// checksums, from the server's address and port.
func TestLinkConnBroadcast(t *testing.T) {
	lab.Require(t, "ip")
	ln := lab.NewLabNet(t, "")
	cli := lab.NewNetNS(t)
	cliIf := ln.NS.Link(t, ln.Bridge, cli)
	cli.AddAddr(t, cliIf, netip.PrefixFrom(ln.Addr.Addr().Next(), ln.Addr.Bits()))
	var conn net.PacketConn
	if err := ln.NS.Do(func() (err error) { conn, err = Listen(ln.Bridge, 0); return err }); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	lc, ok := conn.(*linkConn)
	if !ok {
		t.Fatalf("Listen returned %T, want the link-layer sender (running as root)", conn)
	}
	lc.src = ln.Addr.Addr()
	var rc *net.UDPConn
	if err := cli.Do(func() (err error) {
		rc, err = net.ListenUDP("udp4", &net.UDPAddr{Port: 68})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	payload := bytes.Repeat([]byte("dhcp reply "), 30)
	if _, err := lc.WriteTo(payload, &net.UDPAddr{IP: net.IPv4bcast, Port: 68}); err != nil {
		t.Fatal(err)
	}
	if err := rc.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1500)
	n, from, err := rc.ReadFromUDP(buf)
	if err != nil {
		t.Fatalf("no broadcast received: %v", err)
	}
	if !bytes.Equal(buf[:n], payload) || from.Port != 67 || !from.IP.Equal(ln.Addr.Addr().AsSlice()) {
		t.Fatalf("received %q from %v", buf[:n], from)
	}
}

// TestLinkConnLargeBroadcast: a reply larger than the link's MTU cannot
// go as one frame; it is sent through the UDP socket, which fragments
// it, and still arrives whole.
func TestLinkConnLargeBroadcast(t *testing.T) {
	lab.Require(t, "ip")
	ln := lab.NewLabNet(t, "")
	cli := lab.NewNetNS(t)
	cliIf := ln.NS.Link(t, ln.Bridge, cli)
	cli.AddAddr(t, cliIf, netip.PrefixFrom(ln.Addr.Addr().Next(), ln.Addr.Bits()))
	var conn net.PacketConn
	if err := ln.NS.Do(func() (err error) { conn, err = Listen(ln.Bridge, 0); return err }); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	lc := conn.(*linkConn)
	lc.src = ln.Addr.Addr()
	var rc *net.UDPConn
	if err := cli.Do(func() (err error) {
		rc, err = net.ListenUDP("udp4", &net.UDPAddr{Port: 68})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	payload := bytes.Repeat([]byte("0123456789"), 300) // 3000 bytes: two fragments at MTU 1500
	if _, err := lc.WriteTo(payload, &net.UDPAddr{IP: net.IPv4bcast, Port: 68}); err != nil {
		t.Fatal(err)
	}
	if err := rc.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4000)
	n, _, err := rc.ReadFromUDP(buf)
	if err != nil || !bytes.Equal(buf[:n], payload) {
		t.Fatalf("received %d bytes, %v", n, err)
	}
}
