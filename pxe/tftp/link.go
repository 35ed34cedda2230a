package tftp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"sync"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// link is a transfer's socket, connected to its client: the server's
// transfer ID.
type link interface {
	// send sends each packet as one datagram.
	send(pkts ...[]byte) error
	// recv waits until deadline for one datagram; timedOut reports that
	// the deadline passed first.
	recv(buf []byte, deadline time.Time) (n int, timedOut bool, err error)
	close() error
}

// pollLink is a link on Go's network poller: a transfer waiting for its
// ACK parks its goroutine, not a thread, and a window goes out in one
// sendmmsg. Windowed transfers use it.
type pollLink struct {
	conn  *net.UDPConn
	batch *ipv4.PacketConn
	msgs  []ipv4.Message
	stop  func() bool
}

func newPollLink(ctx context.Context, local net.IP, remote net.UDPAddr) (*pollLink, error) {
	conn, err := net.DialUDP("udp4", &net.UDPAddr{IP: local}, &remote)
	if err != nil {
		return nil, err
	}
	return &pollLink{conn: conn, batch: ipv4.NewPacketConn(conn), stop: context.AfterFunc(ctx, func() { conn.Close() })}, nil
}

func (l *pollLink) send(pkts ...[]byte) error {
	if len(pkts) == 1 { // a plain send is cheaper
		_, err := l.conn.Write(pkts[0])
		return err
	}
	l.msgs = l.msgs[:0]
	for _, b := range pkts {
		l.msgs = append(l.msgs, ipv4.Message{Buffers: [][]byte{b}})
	}
	for msgs := l.msgs; len(msgs) > 0; {
		n, err := l.batch.WriteBatch(msgs, 0)
		if err != nil {
			return err
		}
		msgs = msgs[n:]
	}
	return nil
}

func (l *pollLink) recv(buf []byte, deadline time.Time) (int, bool, error) {
	if err := l.conn.SetReadDeadline(deadline); err != nil {
		return 0, false, err
	}
	n, err := l.conn.Read(buf)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return 0, true, nil
	}
	return n, false, err
}

func (l *pollLink) close() error {
	l.stop()
	return l.conn.Close()
}

// blockingLink is a link on a blocking socket: send and recv are plain
// system calls, and a transfer waiting for its ACK sleeps in recv(2)
// until the kernel wakes its thread, as a forking TFTP server's
// process does. Lock-step transfers use it: each block is one round
// trip, so the time from the ACK's arrival to the next block's send is
// the transfer's speed, and the network poller adds to that time an
// epoll wake-up, a goroutine hand-off and, often, a wake-up of another
// thread of the runtime (measured: twice the CPU per block at one
// client). The goroutine stays in its system call while it waits, so
// the runtime gives its thread to no other goroutine; the server keeps
// a P for each such thread (procs).
type blockingLink struct {
	mu   sync.Mutex // guards fd against close while ctx's shutdown runs
	fd   int
	shut bool // shut down by ctx: recv's 0 bytes mean closed
	stop func() bool
	// timeout is SO_RCVTIMEO as last set.
	timeout time.Duration
	// yielded is when the goroutine last went through the scheduler
	// (or skipped it, when yield said no).
	yielded time.Time
	// yield says whether to yield now; nil: always.
	yield func() bool
}

func newBlockingLink(ctx context.Context, local net.IP, remote net.UDPAddr) (*blockingLink, error) {
	ra4, la4 := remote.IP.To4(), local.To4()
	if ra4 == nil {
		return nil, fmt.Errorf("%s: not an IPv4 address", remote.IP)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socket: %w", err)
	}
	var la unix.SockaddrInet4
	if la4 != nil {
		la.Addr = [4]byte(la4)
	}
	if err := unix.Bind(fd, &la); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("bind %s: %w", local, err)
	}
	if err := unix.Connect(fd, &unix.SockaddrInet4{Addr: [4]byte(ra4), Port: remote.Port}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("connect %s: %w", remote.String(), err)
	}
	l := &blockingLink{fd: fd}
	// close(2) does not wake a thread blocked in recv(2) on Linux;
	// shutdown(2) does, and recv then returns 0 bytes.
	l.stop = context.AfterFunc(ctx, func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.fd >= 0 {
			l.shut = true
			_ = unix.Shutdown(l.fd, unix.SHUT_RDWR)
		}
	})
	return l, nil
}

func (l *blockingLink) send(pkts ...[]byte) error {
	for _, p := range pkts {
		for {
			_, err := unix.Write(l.fd, p)
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				return err
			}
			break
		}
	}
	return nil
}

// slack is how much later than its deadline recv may time out, so that
// SO_RCVTIMEO is set once per transfer rather than before every block.
const slack = 10 * time.Millisecond

// yieldEvery is how often a lock-step transfer's goroutine yields.
const yieldEvery = 8 * time.Millisecond

func (l *blockingLink) recv(buf []byte, deadline time.Time) (int, bool, error) {
	for {
		now := time.Now()
		if now.Sub(l.yielded) > yieldEvery {
			// A goroutine that never passes through the scheduler looks
			// stuck to the runtime's monitor (sysmon) after 10 ms: it then
			// takes the P from under every system call the transfer makes
			// and wakes every 20 µs to do so. That costs about the same
			// however many transfers run, while a yield moves the
			// goroutine to another thread, which costs each transfer:
			// measured (bench/pxe, A/B in the same rounds), yielding won
			// at 1 and 8 clients (1.16x vs 0.84x tftpd-hpa; 0.87x vs
			// 0.84x) and lost at 32 (0.89x vs 0.99x, twice), so the
			// server yields only while few lock-step transfers run.
			if l.yield == nil || l.yield() {
				runtime.Gosched()
			}
			l.yielded = now
		}
		wait := deadline.Sub(now)
		if wait <= 0 {
			return 0, true, nil
		}
		if l.timeout < wait || l.timeout > wait+slack {
			tv := unix.NsecToTimeval(wait.Nanoseconds())
			if tv.Sec == 0 && tv.Usec == 0 {
				tv.Usec = 1 // zero would mean no timeout
			}
			if err := unix.SetsockoptTimeval(l.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
				return 0, false, fmt.Errorf("SO_RCVTIMEO: %w", err)
			}
			l.timeout = wait
		}
		n, err := unix.Read(l.fd, buf)
		switch {
		case err == unix.EAGAIN || err == unix.EINTR:
			continue // the loop's check says whether the deadline passed
		case err != nil:
			return 0, false, err
		case n == 0 && l.isShut():
			return 0, false, net.ErrClosed
		}
		return n, false, nil
	}
}

func (l *blockingLink) isShut() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.shut
}

func (l *blockingLink) close() error {
	l.stop()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.fd < 0 {
		return nil
	}
	err := unix.Close(l.fd)
	l.fd = -1
	return err
}
