package tftp

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"ironbark/internal/lab"
)

// rawClient speaks TFTP packet by packet, so that tests can lose,
// repeat and corrupt what a real client would send.
type rawClient struct {
	t      *testing.T
	conn   *net.UDPConn
	server *net.UDPAddr // the listening port, then the transfer's
	buf    []byte
	armed  time.Time // when the read deadline was last set
}

func newRawClient(t *testing.T, addr string) *rawClient {
	t.Helper()
	ua, err := net.ResolveUDPAddr("udp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawClient{t: t, conn: c, server: ua}
}

func (c *rawClient) send(p []byte) {
	c.t.Helper()
	if _, err := c.conn.WriteToUDP(p, c.server); err != nil {
		c.t.Fatal(err)
	}
}

// rrq sends a read request with option name/value pairs.
func (c *rawClient) rrq(name, mode string, opts ...string) {
	p := binary.BigEndian.AppendUint16(nil, opRRQ)
	for _, f := range append([]string{name, mode}, opts...) {
		p = append(append(p, f...), 0)
	}
	c.send(p)
}

func (c *rawClient) ack(block uint16) {
	c.send(binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(nil, opACK), block))
}

// recv returns the next packet; the first one fixes the transfer's port.
// The deadline only keeps a broken server from hanging the test.
func (c *rawClient) recv() []byte {
	c.t.Helper()
	if c.buf == nil {
		c.buf = make([]byte, 70000)
	}
	if now := time.Now(); now.Sub(c.armed) > time.Second {
		if err := c.conn.SetReadDeadline(now.Add(30 * time.Second)); err != nil {
			c.t.Fatal(err)
		}
		c.armed = now
	}
	n, from, err := c.conn.ReadFromUDP(c.buf)
	if err != nil {
		c.t.Fatalf("receive: %v", err)
	}
	c.server = from
	return bytes.Clone(c.buf[:n])
}

// data receives a DATA packet and returns its block number and payload.
func (c *rawClient) data() (uint16, []byte) {
	c.t.Helper()
	p := c.recv()
	if len(p) < 4 || binary.BigEndian.Uint16(p) != opDATA {
		c.t.Fatalf("want DATA, got %s", describe(p))
	}
	return binary.BigEndian.Uint16(p[2:]), p[4:]
}

// oack receives an OACK and returns its options.
func (c *rawClient) oack() map[string]string {
	c.t.Helper()
	p := c.recv()
	if len(p) < 2 || binary.BigEndian.Uint16(p) != opOACK {
		c.t.Fatalf("want OACK, got %s", describe(p))
	}
	m := map[string]string{}
	f := bytes.Split(p[2:], []byte{0})
	for i := 0; i+1 < len(f); i += 2 {
		m[string(f[i])] = string(f[i+1])
	}
	return m
}

// errorCode receives an ERROR and returns its code.
func (c *rawClient) errorCode() uint16 {
	c.t.Helper()
	p := c.recv()
	if len(p) < 4 || binary.BigEndian.Uint16(p) != opERROR {
		c.t.Fatalf("want ERROR, got %s", describe(p))
	}
	return binary.BigEndian.Uint16(p[2:])
}

func describe(p []byte) string {
	if len(p) < 4 {
		return fmt.Sprintf("%d bytes %x", len(p), p)
	}
	return fmt.Sprintf("opcode %d, %d/%d bytes: %q", binary.BigEndian.Uint16(p), binary.BigEndian.Uint16(p[2:]), len(p), p[4:min(len(p), 40)])
}

// windowServer serves a file of size bytes from memory; timeout is the
// server's retransmission timeout.
func windowServer(t *testing.T, size int, timeout time.Duration) (addr string, data []byte) {
	t.Helper()
	data = make([]byte, size)
	rand.Read(data)
	s, err := New(Config{Timeout: timeout, Retries: 3, MaxWindowSize: 32, Logger: slog.New(slog.NewTextHandler(os.Stderr, nil))})
	if err != nil {
		t.Fatal(err)
	}
	must(t, s.Add("f", data))
	return serve(t, s), data
}

func TestNegotiate(t *testing.T) {
	for _, tc := range []struct {
		opts       []string
		blk, win   int
		tsize      bool
		oack, name string
	}{
		{nil, 512, 1, false, "", "none"},
		{[]string{"blksize", "1468", "windowsize", "16", "tsize", "0"}, 1468, 16, true, "blksize=1468 windowsize=16", "usual"},
		{[]string{"BlkSize", "1024", "WINDOWSIZE", "4"}, 1024, 4, false, "blksize=1024 windowsize=4", "case"},
		{[]string{"multicast", "", "foo", "bar", "windowsize", "8"}, 512, 8, false, "windowsize=8", "unknown ignored"},
		{[]string{"windowsize", "0"}, 512, 1, false, "", "windowsize 0"},
		{[]string{"windowsize", "65536"}, 512, 1, false, "", "windowsize above 65535"},
		{[]string{"windowsize", "-3"}, 512, 1, false, "", "windowsize negative"},
		{[]string{"windowsize", "lots"}, 512, 1, false, "", "windowsize not a number"},
		{[]string{"windowsize", "65535"}, 512, 32, false, "windowsize=32", "windowsize lowered to the maximum"},
		{[]string{"blksize", "7"}, 512, 1, false, "", "blksize too small"},
		{[]string{"blksize", "65465"}, 512, 1, false, "", "blksize too large"},
		{[]string{"blksize", "65464"}, 1468, 1, false, "blksize=1468", "blksize lowered to the maximum"},
		{[]string{"timeout", "0", "tsize", "12"}, 512, 1, false, "", "bad timeout and tsize"},
		{[]string{"timeout", "3"}, 512, 1, false, "timeout=3", "timeout"},
		{[]string{"windowsize", "4", "windowsize", "9"}, 512, 4, false, "windowsize=4", "repeated: first counts"},
	} {
		var opts []option
		for i := 0; i+1 < len(tc.opts); i += 2 {
			opts = append(opts, option{strings.ToLower(tc.opts[i]), tc.opts[i+1]})
		}
		n := negotiate(opts, 1468, 32)
		var got []string
		for _, o := range n.oack {
			got = append(got, o.name+"="+o.value)
		}
		if n.blksize != tc.blk || n.window != tc.win || n.tsize != tc.tsize || strings.Join(got, " ") != tc.oack {
			t.Errorf("%s: blksize %d windowsize %d tsize %v oack %q, want %d %d %v %q",
				tc.name, n.blksize, n.window, n.tsize, got, tc.blk, tc.win, tc.tsize, tc.oack)
		}
	}
}

func TestParseRequest(t *testing.T) {
	r, err := parseRequest([]byte("\x00\x01a/b\x00OcTeT\x00windowsize\x008\x00"))
	if err != nil || r.filename != "a/b" || r.mode != "octet" || len(r.opts) != 1 || r.opts[0] != (option{"windowsize", "8"}) {
		t.Fatalf("%+v %v", r, err)
	}
	for _, p := range []string{"", "\x00", "\x00\x01", "\x00\x01f\x00octet", "\x00\x01f\x00octet\x00blksize\x00",
		"\x00\x03f\x00octet\x00", "\x00\x01f\x00"} {
		if _, err := parseRequest([]byte(p)); !errors.Is(err, errMalformed) {
			t.Errorf("%q: %v, want malformed", p, err)
		}
	}
}

// TestWindowLostPackets drives a windowed transfer by hand: a lost window
// is sent again on timeout, an ACK inside the window restarts it after
// the acknowledged block, a repeated ACK is answered once per window, and
// the file arrives whole.
func TestWindowLostPackets(t *testing.T) {
	const blk = 512
	addr, want := windowServer(t, 10*blk+100, 200*time.Millisecond)
	c := newRawClient(t, addr)
	c.rrq("f", "octet", "blksize", "512", "windowsize", "4", "tsize", "0", "color", "blue")
	if o := c.oack(); o["windowsize"] != "4" || o["blksize"] != "512" || o["tsize"] != fmt.Sprint(len(want)) || len(o) != 3 {
		t.Fatalf("OACK %v", o)
	}
	c.ack(0)
	got := map[uint16][]byte{}
	window := func(first, last uint16) {
		t.Helper()
		for b := first; b <= last; b++ {
			n, d := c.data()
			if n != b {
				t.Fatalf("got block %d, want %d", n, b)
			}
			got[n] = d
		}
	}
	window(1, 4)
	// The ACK is "lost": the server times out and sends the window again.
	window(1, 4)
	// Block 3 was "lost": ACK 2; the window restarts at 3.
	c.ack(2)
	window(3, 6)
	// The same ACK twice: the window is sent once more, not twice (else
	// blocks 3-6 would come again before block 7).
	c.ack(2)
	window(3, 6)
	c.ack(2)
	c.ack(6)
	window(7, 10)
	c.ack(10)
	window(11, 11)
	c.ack(11)
	var all []byte
	for b := uint16(1); b <= 11; b++ {
		all = append(all, got[b]...)
	}
	if !bytes.Equal(all, want) {
		t.Fatalf("got %d bytes, want %d", len(all), len(want))
	}
}

// TestLockstepDuplicateAck: without windowsize a repeated ACK is not
// answered (Sorcerer's Apprentice), and an old ACK changes nothing.
func TestLockstepDuplicateAck(t *testing.T) {
	addr, want := windowServer(t, 3*512+1, time.Minute)
	c := newRawClient(t, addr)
	c.rrq("f", "octet", "unknown", "1")
	var all []byte
	for b := uint16(1); b <= 4; b++ {
		n, d := c.data()
		if n != b {
			t.Fatalf("got block %d, want %d", n, b)
		}
		all = append(all, d...)
		if b == 2 {
			c.ack(1) // repeated
			c.ack(0) // stale
		}
		c.ack(b)
	}
	if !bytes.Equal(all, want) {
		t.Fatalf("got %d bytes, want %d", len(all), len(want))
	}
}

// TestBlockNumberWraps: more than 65535 blocks; block numbers wrap to 0.
func TestBlockNumberWraps(t *testing.T) {
	const blk, blocks = 8, 70000
	addr, want := windowServer(t, blk*blocks+3, time.Minute)
	c := newRawClient(t, addr)
	c.rrq("f", "octet", "blksize", "8", "windowsize", "32")
	if o := c.oack(); o["windowsize"] != "32" || o["blksize"] != "8" {
		t.Fatalf("OACK %v", o)
	}
	c.ack(0)
	var all []byte
	next := uint16(1)
	for done := false; !done; {
		for range 32 {
			n, d := c.data()
			if n != next {
				t.Fatalf("got block %d, want %d", n, next)
			}
			all = append(all, d...)
			next++
			if len(d) < blk {
				done = true
				break
			}
		}
		c.ack(next - 1)
	}
	if !bytes.Equal(all, want) {
		t.Fatalf("got %d bytes, want %d", len(all), len(want))
	}
}

// TestBadRequests: each gets the right ERROR, and the server goes on.
func TestBadRequests(t *testing.T) {
	addr, want := windowServer(t, 600, time.Minute)
	for _, tc := range []struct {
		name string
		send func(c *rawClient)
		code uint16
	}{
		{"missing file", func(c *rawClient) { c.rrq("nope", "octet") }, errNotFound},
		{"escape", func(c *rawClient) { c.rrq("../f", "octet") }, errAccess},
		{"mail mode", func(c *rawClient) { c.rrq("f", "mail") }, errIllegalOp},
		{"write", func(c *rawClient) { c.send([]byte("\x00\x02f\x00octet\x00")) }, errAccess},
		{"unterminated", func(c *rawClient) { c.send([]byte("\x00\x01f\x00octet")) }, errIllegalOp},
		{"option without value", func(c *rawClient) { c.send([]byte("\x00\x01f\x00octet\x00windowsize\x00")) }, errIllegalOp},
	} {
		c := newRawClient(t, addr)
		tc.send(c)
		if got := c.errorCode(); got != tc.code {
			t.Errorf("%s: error %d, want %d", tc.name, got, tc.code)
		}
	}
	// Stray packets on the server port are not answered: the next
	// request is.
	c := newRawClient(t, addr)
	c.ack(7)
	c.send([]byte{0, 3, 0, 1, 'x'})
	c.send([]byte{9})
	// A client that refuses the OACK ends its transfer.
	c.rrq("f", "octet", "windowsize", "4")
	c.oack()
	c.send(errorPacket(errOptionRefused, "no thanks"))
	// And the server still serves.
	c = newRawClient(t, addr)
	c.rrq("f", "netascii", "tsize", "0")
	_, d1 := c.data() // netascii: no tsize, so no OACK
	c.ack(1)
	_, d2 := c.data()
	c.ack(2)
	if got := append(d1, d2...); len(got) < len(want) {
		t.Fatalf("netascii: %d bytes, want at least %d", len(got), len(want))
	}
}

// TestATFTPWindowsize fetches with Debian's atftp client asking for
// windowsize (RFC 7440), and checks the server acknowledged it.
func TestATFTPWindowsize(t *testing.T) {
	lab.Require(t, "atftp")
	s, _, big := fixture(t)
	host, port, _ := net.SplitHostPort(serve(t, s))
	for _, w := range []string{"1", "8", "64"} {
		out := filepath.Join(t.TempDir(), "got")
		cmd := exec.Command("atftp", "--trace", "--option", "blksize 1468", "--option", "windowsize "+w,
			"--option", "tsize 0", "-g", "-r", "undionly.kpxe", "-l", out, host, port)
		b, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("atftp windowsize %s: %v\n%s", w, err, b)
		}
		want := "windowsize: " + w // the fixture's maximum is the default, 64
		i := strings.Index(string(b), "received OACK")
		if i < 0 || !strings.Contains(string(b[i:]), want) {
			t.Errorf("atftp windowsize %s: no %q in the OACK:\n%.400s", w, want, b)
		}
		got, err := os.ReadFile(out)
		if err != nil || !bytes.Equal(got, big) {
			t.Fatalf("atftp windowsize %s: got %d bytes (%v), want %d", w, len(got), err, len(big))
		}
	}
}

// TestBusy: beyond MaxTransfers a request is refused at once, and served
// once a transfer ends.
func TestBusy(t *testing.T) {
	s, err := New(Config{Timeout: time.Minute, MaxTransfers: 1, Logger: slog.New(slog.NewTextHandler(os.Stderr, nil))})
	if err != nil {
		t.Fatal(err)
	}
	must(t, s.Add("f", []byte("small")))
	addr := serve(t, s)
	first := newRawClient(t, addr)
	first.rrq("f", "octet")
	if n, _ := first.data(); n != 1 { // running, waiting for its ACK
		t.Fatalf("block %d", n)
	}
	second := newRawClient(t, addr)
	second.rrq("f", "octet")
	if code := second.errorCode(); code != errUndefined {
		t.Fatalf("busy: error %d", code)
	}
	first.ack(1) // the first transfer ends
	for try := 0; ; try++ {
		c := newRawClient(t, addr)
		c.rrq("f", "octet")
		p := c.recv()
		if binary.BigEndian.Uint16(p) == opDATA {
			break
		}
		if try == 100 {
			t.Fatalf("still refused: %s", describe(p))
		}
		time.Sleep(10 * time.Millisecond) // the ended transfer is being removed
	}
}
