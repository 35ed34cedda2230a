package tftp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
)

// transfer sends one file to one client over its own connected socket
// (the server's transfer ID), in windows of negotiated blocks (RFC 7440;
// a window of 1 is RFC 1350's lock-step).
type transfer struct {
	conn    link
	src     io.Reader
	blksize int
	window  int
	timeout time.Duration
	retries int

	// blocks holds the DATA packets base, base+1, ... that are read but
	// not yet acknowledged, at most window of them; free keeps spare
	// buffers.
	blocks [][]byte
	free   [][]byte
	base   uint64 // number of blocks[0], counting from 1 without wrapping
	eof    bool   // the final (short) block is in blocks

	sent, resent int // DATA packets sent; of those, sent again
	buf          []byte
}

// errClientGone is a transfer that timed out waiting for the client.
var errClientGone = errors.New("client stopped answering")

func newTransfer(conn link, src io.Reader, n negotiated, timeout time.Duration, retries int) *transfer {
	if n.timeoutSec > 0 {
		timeout = time.Duration(n.timeoutSec) * time.Second
	}
	return &transfer{conn: conn, src: src, blksize: n.blksize, window: n.window,
		timeout: timeout, retries: retries, base: 1, buf: make([]byte, 1500)}
}

// fill reads blocks until the window is full or the final block is in.
func (t *transfer) fill() error {
	for len(t.blocks) < t.window && !t.eof {
		var b []byte
		if k := len(t.free); k > 0 {
			b, t.free = t.free[k-1], t.free[:k-1]
		} else {
			b = make([]byte, 4+t.blksize)
		}
		b = b[:4+t.blksize]
		n, err := io.ReadFull(t.src, b[4:])
		switch {
		case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
			t.eof = true // a short block, possibly empty, ends the file
		case err != nil:
			return fmt.Errorf("read: %w", err)
		}
		binary.BigEndian.PutUint16(b, opDATA)
		binary.BigEndian.PutUint16(b[2:], uint16(t.base+uint64(len(t.blocks)))) // wraps to 0 after 65535
		t.blocks = append(t.blocks, b[:4+n])
	}
	return nil
}

// sendWindow sends every block in the window; the first resend of them
// were sent before.
func (t *transfer) sendWindow(resend int) error {
	if err := t.conn.send(t.blocks...); err != nil {
		return fmt.Errorf("send: %w", err)
	}
	t.sent += len(t.blocks)
	t.resent += resend
	return nil
}

// exchange sends pkt and waits for the ACK of block 0 (after an OACK).
func (t *transfer) exchange(pkt []byte) error {
	for try := 0; ; try++ {
		if try > t.retries {
			return fmt.Errorf("option acknowledgement: %w", errClientGone)
		}
		if err := t.conn.send(pkt); err != nil {
			return fmt.Errorf("send: %w", err)
		}
		deadline := time.Now().Add(t.timeout)
		for {
			block, ok, err := t.readAck(deadline)
			if err != nil {
				return err
			}
			if !ok {
				break // timeout: send again
			}
			if block == 0 {
				return nil
			}
		}
	}
}

// readAck waits until deadline for an ACK. ok false means the deadline
// passed; a client ERROR or a dead socket is an error. Other packets are
// skipped.
func (t *transfer) readAck(deadline time.Time) (block uint16, ok bool, err error) {
	for {
		n, timedOut, err := t.conn.recv(t.buf, deadline)
		if timedOut {
			return 0, false, nil
		}
		if err != nil {
			return 0, false, fmt.Errorf("receive: %w", err)
		}
		block, ok, err := parseAck(t.buf[:n])
		if err != nil || ok {
			return block, ok, err
		}
	}
}

// run sends the file, a window at a time: after each window it waits for
// the ACK of the window's last block. An ACK of an earlier block means
// the client missed the one after it: the window restarts there. A
// timeout sends the window again. A repeated ACK that acknowledges
// nothing new is answered once per window when windows are larger than
// one block, and never in lock-step (RFC 1123's Sorcerer's Apprentice
// rule: duplicate ACKs must not double the traffic).
func (t *transfer) run() (int64, error) {
	var bytes int64
	tries, answeredDup := 0, false
	for {
		resend := len(t.blocks) // sent before, not acknowledged
		if err := t.fill(); err != nil {
			return bytes, err
		}
		if err := t.sendWindow(resend); err != nil {
			return bytes, err
		}
		deadline := time.Now().Add(t.timeout)
	wait:
		for {
			block, ok, err := t.readAck(deadline)
			if err != nil {
				return bytes, err
			}
			if !ok {
				if tries++; tries > t.retries {
					return bytes, errClientGone
				}
				break wait
			}
			// Which block is acknowledged: between base-1 (nothing new)
			// and the last one sent; others are stale and skipped.
			d := int(block - uint16(t.base-1))
			switch {
			case d > len(t.blocks):
				continue
			case d == 0:
				if t.window == 1 || answeredDup {
					continue
				}
				answeredDup = true
				break wait
			}
			for _, b := range t.blocks[:d] {
				bytes += int64(len(b) - 4)
				t.free = append(t.free, b)
			}
			t.blocks = append(t.blocks[:0], t.blocks[d:]...)
			t.base += uint64(d)
			tries, answeredDup = 0, false
			if t.eof && len(t.blocks) == 0 {
				return bytes, nil
			}
			// A partial ACK sends the rest of the window again.
			break wait
		}
	}
}

// fileSize is the size of r when it can be known without reading it.
func fileSize(r io.Reader) (int64, bool) {
	switch v := r.(type) {
	case *os.File:
		st, err := v.Stat()
		if err != nil {
			return 0, false
		}
		return st.Size(), true
	case interface{ Size() int64 }:
		return v.Size(), true
	}
	return 0, false
}
