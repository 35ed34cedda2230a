package dhcp

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
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
	payload := bytes.Repeat([]byte("dhcp reply "), 30)
	lc, rc, server := linkPair(t)
	from := sendUntilReceived(t, lc, rc, payload)
	if from.Port != 67 || !from.IP.Equal(server.AsSlice()) {
		t.Fatalf("received from %v", from)
	}
}

// TestLinkConnLargeBroadcast: a reply larger than the link's MTU cannot
// go as one frame; it is sent through the UDP socket, which fragments
// it, and still arrives whole.
func TestLinkConnLargeBroadcast(t *testing.T) {
	lc, rc, _ := linkPair(t)
	sendUntilReceived(t, lc, rc, bytes.Repeat([]byte("0123456789"), 300)) // 3000 bytes: two fragments at MTU 1500
}

// linkPair makes the server's socket with Listen on a lab bridge and a
// client's UDP socket on port 68 in a namespace behind it.
func linkPair(t *testing.T) (lc *linkConn, rc *net.UDPConn, server netip.Addr) {
	t.Helper()
	lab.Require(t, "ip")
	ln := lab.NewLabNet(t, "")
	cli := lab.NewNetNS(t)
	cliIf := ln.NS.Link(t, ln.Bridge, cli)
	cli.AddAddr(t, cliIf, netip.PrefixFrom(ln.Addr.Addr().Next(), ln.Addr.Bits()))
	var conn net.PacketConn
	if err := ln.NS.Do(func() (err error) { conn, err = Listen(ln.Bridge, 0); return err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	lc, ok := conn.(*linkConn)
	if !ok {
		t.Fatalf("Listen returned %T, want the link-layer sender (running as root)", conn)
	}
	lc.src = ln.Addr.Addr()
	if err := cli.Do(func() (err error) {
		rc, err = net.ListenUDP("udp4", &net.UDPAddr{Port: 68})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rc.Close() })
	return lc, rc, ln.Addr.Addr()
}

// sendUntilReceived broadcasts payload through lc until rc receives it
// (the new link may drop the first frames while its ports come up), and
// returns the sender's address.
func sendUntilReceived(t *testing.T, lc *linkConn, rc *net.UDPConn, payload []byte) *net.UDPAddr {
	t.Helper()
	buf := make([]byte, 4000)
	for range 50 {
		if _, err := lc.WriteTo(payload, &net.UDPAddr{IP: net.IPv4bcast, Port: 68}); err != nil {
			t.Fatal(err)
		}
		if err := rc.SetReadDeadline(time.Now().Add(200 * time.Millisecond)); err != nil {
			t.Fatal(err)
		}
		n, from, err := rc.ReadFromUDP(buf)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf[:n], payload) {
			t.Fatalf("received %d bytes %q", n, buf[:n])
		}
		return from
	}
	t.Fatal("broadcast never received")
	return nil
}
