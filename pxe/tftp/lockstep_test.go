package tftp

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"
)

// TestLockstepLostAndStrayPackets drives a lock-step transfer (served on
// a blocking socket) by hand: a lost ACK gets its block again on
// timeout, stray packets and a bad opcode on the transfer's port are
// ignored, an ACK from another port is not the client's, and the file
// arrives whole.
func TestLockstepLostAndStrayPackets(t *testing.T) {
	addr, want := windowServer(t, 3*512+7, 200*time.Millisecond)
	c := newRawClient(t, addr)
	c.rrq("f", "octet")
	var all []byte
	n, d := c.data()
	if n != 1 {
		t.Fatalf("got block %d, want 1", n)
	}
	// The ACK is "lost": block 1 again after the timeout.
	if n2, d2 := c.data(); n2 != 1 || !bytes.Equal(d2, d) {
		t.Fatalf("got block %d, want 1 again", n2)
	}
	all = append(all, d...)
	// Garbage on the transfer's port: opcode 9, a DATA, a short packet.
	c.send([]byte{0, 9, 0, 1})
	c.send([]byte{0, opDATA, 0, 2, 'x'})
	c.send([]byte{7})
	// An ACK for block 2 from another port (another transfer ID).
	other, err := net.DialUDP("udp4", nil, c.server)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if _, err := other.Write([]byte{0, opACK, 0, 2}); err != nil {
		t.Fatal(err)
	}
	c.ack(1)
	for b := uint16(2); b <= 4; b++ {
		n, d := c.data()
		if n != b {
			t.Fatalf("got block %d, want %d", n, b)
		}
		all = append(all, d...)
		c.ack(b)
	}
	if !bytes.Equal(all, want) {
		t.Fatalf("got %d bytes, want %d", len(all), len(want))
	}
}

// TestLockstepClientGone: a client that stops answering is given up
// after the retries, and one that sends an ERROR at once; both leave
// the server serving.
func TestLockstepClientGone(t *testing.T) {
	addr, want := windowServer(t, 600, 50*time.Millisecond)
	c := newRawClient(t, addr)
	c.rrq("f", "octet", "blksize", "512")
	c.oack()
	c.send(errorPacket(errUndefined, "disk full"))

	c = newRawClient(t, addr)
	c.rrq("f", "octet")
	for range 4 { // the first send and 3 retries (windowServer's)
		if n, _ := c.data(); n != 1 {
			t.Fatalf("got block %d, want 1", n)
		}
	}
	c = newRawClient(t, addr)
	c.rrq("f", "octet")
	_, d1 := c.data()
	c.ack(1)
	_, d2 := c.data()
	c.ack(2)
	if got := append(d1, d2...); !bytes.Equal(got, want) {
		t.Fatalf("got %d bytes, want %d", len(got), len(want))
	}
}

// TestLockstepStopsOnCancel: a lock-step transfer blocked in recv(2)
// waiting for an ACK ends when the server's context does (Serve
// returns; with a timeout of a minute, only the shutdown can wake it).
func TestLockstepStopsOnCancel(t *testing.T) {
	s, err := New(Config{Timeout: time.Minute, Logger: slog.New(slog.NewTextHandler(os.Stderr, nil))})
	if err != nil {
		t.Fatal(err)
	}
	must(t, s.Add("f", make([]byte, 2000)))
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, conn) }()
	c := newRawClient(t, conn.LocalAddr().String())
	c.rrq("f", "octet")
	if n, _ := c.data(); n != 1 {
		t.Fatalf("got block %d", n)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestLockstepThreadsCap: beyond LockStepThreads, lock-step transfers
// run on the network poller, and every one completes; GOMAXPROCS is
// what it was once they are done.
func TestLockstepThreadsCap(t *testing.T) {
	procsBefore := runtime.GOMAXPROCS(0)
	for _, threads := range []int{-1, 1, 3} {
		t.Run(fmt.Sprint(threads), func(t *testing.T) { // its server stops at its end
			lockstepClients(t, threads)
		})
	}
	if got := runtime.GOMAXPROCS(0); got != procsBefore {
		t.Errorf("GOMAXPROCS %d after the transfers, was %d", got, procsBefore)
	}
}

func lockstepClients(t *testing.T, threads int) {
	s, err := New(Config{LockStepThreads: threads, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 100_000)
	for i := range data {
		data[i] = byte(i * 7)
	}
	must(t, s.Add("f", data))
	addr := serve(t, s)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			got, _, err := get(addr, "f", 512+i)
			if err != nil || !bytes.Equal(got, data) {
				t.Errorf("threads %d, client %d: %d bytes, %v", threads, i, len(got), err)
			}
		})
	}
	wg.Wait()
}

// TestProcs: GOMAXPROCS rises in steps with the threads counted, and
// is put back when none are left; yielding stops with many threads.
func TestProcs(t *testing.T) {
	base := runtime.GOMAXPROCS(0)
	var p procs
	if !p.take(5) {
		t.Fatal("take refused")
	}
	if got := runtime.GOMAXPROCS(0); got != base+procStep {
		t.Errorf("1 thread: GOMAXPROCS %d, want %d", got, base+procStep)
	}
	for range 4 {
		p.take(5)
	}
	if p.take(5) {
		t.Error("a sixth thread was taken with a cap of 5")
	}
	if got := runtime.GOMAXPROCS(0); got != base+2*procStep {
		t.Errorf("5 threads: GOMAXPROCS %d, want %d", got, base+2*procStep)
	}
	if !p.few() {
		t.Error("5 threads are not few")
	}
	p.add(yieldBelow)
	if p.few() {
		t.Errorf("%d threads are few", 5+yieldBelow)
	}
	p.add(-yieldBelow)
	for range 5 {
		p.add(-1)
	}
	if got := runtime.GOMAXPROCS(0); got != base {
		t.Errorf("none: GOMAXPROCS %d, want %d", got, base)
	}
}

// TestParseAckIgnoresOthers: only an ACK is an ACK; a client's ERROR is
// an error.
func TestParseAckIgnoresOthers(t *testing.T) {
	for _, p := range [][]byte{nil, {0}, {0, opACK, 1}, {0, opDATA, 0, 1}, {0, 9, 0, 1}, {1, opACK, 0, 1}} {
		if _, ok, err := parseAck(p); ok || err != nil {
			t.Errorf("%x: ack %v, err %v", p, ok, err)
		}
	}
	if b, ok, _ := parseAck(binary.BigEndian.AppendUint16([]byte{0, opACK}, 513)); !ok || b != 513 {
		t.Errorf("ACK 513: %d %v", b, ok)
	}
	if _, _, err := parseAck(errorPacket(errNotFound, "x")); err == nil {
		t.Error("ERROR not returned")
	}
}
