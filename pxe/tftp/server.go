package tftp

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pin/tftp/v3/netascii"
	"golang.org/x/net/ipv4"
)

// Config configures a Server.
type Config struct {
	// Root is the directory served; empty serves only added files.
	Root string
	// Logger gets one line per transfer. Default slog.Default().
	Logger *slog.Logger
	// Timeout is the per-packet retransmission timeout (default 2s) and
	// Retries the attempts per packet (default 5).
	Timeout time.Duration
	Retries int
	// MaxBlockSize caps the negotiated blksize (default: what fits the
	// MTU of the interface the request came in on).
	MaxBlockSize int
	// MaxWindowSize caps the negotiated windowsize, the blocks sent
	// before waiting for an ACK (RFC 7440; default 64).
	MaxWindowSize int
	// MaxTransfers caps the transfers running at once (default 512);
	// requests beyond it get an error ("server busy") and retry.
	MaxTransfers int
	// LockStepThreads caps the lock-step transfers (no windowsize, as
	// most PXE ROMs ask) that wait for their ACKs on a thread of their
	// own, blocked in recv(2), like a forking server's processes; GOMAXPROCS
	// is raised by as many while they run (see procs). Beyond it,
	// lock-step transfers wait on Go's network poller, as windowed ones
	// do. Default 64; negative: none.
	LockStepThreads int
}

// GenerateFunc produces a file's content per request, e.g. a per-client
// boot configuration. remote is the client's address.
type GenerateFunc func(ctx context.Context, remote net.UDPAddr) ([]byte, error)

// ErrNotFound is returned by Open for names that exist nowhere.
var ErrNotFound = errors.New("file not found")

// ErrBadPath is returned for names that are absolute, contain "..", NUL
// or backslashes, or are empty.
var ErrBadPath = errors.New("path not allowed")

// Server serves files read-only. Add and AddFunc may be called while it
// serves.
type Server struct {
	cfg  Config
	log  *slog.Logger
	root *os.Root // nil without a Root directory

	mu        sync.RWMutex
	mem       map[string][]byte
	generated map[string]GenerateFunc

	procs procs
}

// New opens the root directory (if any) and returns a server.
func New(cfg Config) (*Server, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 2 * time.Second
	}
	if cfg.Retries <= 0 {
		cfg.Retries = 5
	}
	if cfg.MaxWindowSize <= 0 {
		cfg.MaxWindowSize = 64
	}
	if cfg.MaxTransfers <= 0 {
		cfg.MaxTransfers = 512
	}
	if cfg.LockStepThreads == 0 {
		cfg.LockStepThreads = 64
	}
	cfg.MaxWindowSize = min(cfg.MaxWindowSize, maxWindowSize)
	s := &Server{cfg: cfg, log: cfg.Logger, mem: map[string][]byte{}, generated: map[string]GenerateFunc{}}
	if cfg.Root != "" {
		r, err := os.OpenRoot(cfg.Root)
		if err != nil {
			return nil, fmt.Errorf("tftp root: %w", err)
		}
		s.root = r
	}
	return s, nil
}

// Close releases the root directory.
func (s *Server) Close() error {
	if s.root != nil {
		return s.root.Close()
	}
	return nil
}

// Clean validates a requested name and returns it in canonical form
// (slash-separated, relative, no "." elements).
func Clean(name string) (string, error) {
	if name == "" || strings.ContainsAny(name, "\x00\\") || strings.HasPrefix(name, "/") {
		return "", fmt.Errorf("%q: %w", name, ErrBadPath)
	}
	for _, el := range strings.Split(name, "/") {
		if el == ".." {
			return "", fmt.Errorf("%q: %w", name, ErrBadPath)
		}
	}
	c := path.Clean(name)
	if c == "." {
		return "", fmt.Errorf("%q: %w", name, ErrBadPath)
	}
	return c, nil
}

// Add serves data under name (replacing any earlier one).
func (s *Server) Add(name string, data []byte) error {
	c, err := Clean(name)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mem[c] = data
	delete(s.generated, c)
	return nil
}

// AddFunc serves the output of fn under name.
func (s *Server) AddFunc(name string, fn GenerateFunc) error {
	c, err := Clean(name)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.generated[c] = fn
	delete(s.mem, c)
	return nil
}

// Has reports whether name would be served (pxe uses it to choose between
// snponly.efi and ipxe.efi).
func (s *Server) Has(name string) bool {
	r, err := s.Open(context.Background(), name, net.UDPAddr{})
	if err != nil {
		return false
	}
	if c, ok := r.(io.Closer); ok {
		c.Close()
	}
	return true
}

// Open returns the content for name: an added file, a generated one, or
// a regular file under the root. The reader is an io.ReadSeeker (so tsize
// is known); close it if it is an io.Closer.
func (s *Server) Open(ctx context.Context, name string, remote net.UDPAddr) (io.ReadSeeker, error) {
	c, err := Clean(name)
	if err != nil {
		return nil, err
	}
	s.mu.RLock()
	data, isMem := s.mem[c]
	gen := s.generated[c]
	s.mu.RUnlock()
	switch {
	case isMem:
		return bytes.NewReader(data), nil
	case gen != nil:
		b, err := gen(ctx, remote)
		if err != nil {
			return nil, fmt.Errorf("generate %s: %w", c, err)
		}
		return bytes.NewReader(b), nil
	case s.root == nil:
		return nil, fmt.Errorf("%s: %w", c, ErrNotFound)
	}
	f, err := s.root.Open(c)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", c, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", c, err) // includes symlinks escaping the root
	}
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%s: not a regular file: %w", c, ErrNotFound)
	}
	return f, nil
}

// Serve answers read requests on conn until ctx ends, then stops the
// running transfers (each has its own socket, the server's transfer ID)
// and waits for them. Transfer sockets are opened on the address the
// request was sent to, in the calling goroutine's network namespace.
func (s *Server) Serve(ctx context.Context, conn net.PacketConn) error {
	s.log.Info("tftp serving", "addr", conn.LocalAddr(), "root", s.cfg.Root)
	// The request's destination address, so that replies come from the
	// address the client talks to even when conn listens on all.
	var pc *ipv4.PacketConn
	if uc, ok := conn.(*net.UDPConn); ok {
		pc = ipv4.NewPacketConn(uc)
		if err := pc.SetControlMessage(ipv4.FlagDst, true); err != nil {
			pc = nil
		}
	}
	tctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	var mu sync.Mutex
	active := map[string]bool{} // clients with a transfer running
	buf := make([]byte, 65536)
	for {
		var (
			n      int
			remote net.Addr
			local  net.IP
			err    error
		)
		if pc != nil {
			var cm *ipv4.ControlMessage
			n, cm, remote, err = pc.ReadFrom(buf)
			if cm != nil {
				local = cm.Dst
			}
		} else {
			n, remote, err = conn.ReadFrom(buf)
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("tftp read: %w", err)
		}
		ra, ok := remote.(*net.UDPAddr)
		if !ok {
			continue
		}
		if local == nil || local.IsUnspecified() {
			if la, ok := conn.LocalAddr().(*net.UDPAddr); ok {
				local = la.IP
			}
		}
		req, err := parseRequest(buf[:n])
		if err != nil {
			// ACKs and errors of finished transfers land here too: only
			// what looks like a request is answered.
			if n >= 2 && (buf[1] == opRRQ || buf[1] == opWRQ) && buf[0] == 0 {
				s.log.Warn("tftp bad request", "client", ra.String(), "err", err)
				s.reply(local, ra, errorPacket(errIllegalOp, err.Error()))
			}
			continue
		}
		if req.op == opWRQ {
			s.log.Warn("tftp write refused", "file", req.filename, "client", ra.String())
			s.reply(local, ra, errorPacket(errAccess, "read-only server"))
			continue
		}
		key := ra.String()
		mu.Lock()
		repeated, full := active[key], len(active) >= s.cfg.MaxTransfers
		if !repeated && !full {
			active[key] = true
		}
		mu.Unlock()
		if repeated {
			continue // a repeated request: its transfer retransmits itself
		}
		if full {
			s.log.Warn("tftp busy", "file", req.filename, "client", key, "transfers", s.cfg.MaxTransfers)
			s.reply(local, ra, errorPacket(errUndefined, "server busy, try again"))
			continue
		}
		wg.Go(func() {
			defer func() { mu.Lock(); delete(active, key); mu.Unlock() }()
			s.serveRead(tctx, local, *ra, req)
		})
	}
}

// reply sends one packet to a client from a fresh socket (an error for
// a request that starts no transfer).
func (s *Server) reply(local net.IP, remote *net.UDPAddr, pkt []byte) {
	c, err := net.DialUDP("udp4", &net.UDPAddr{IP: local}, remote)
	if err != nil {
		s.log.Warn("tftp reply", "client", remote.String(), "err", err)
		return
	}
	defer c.Close()
	_, _ = c.Write(pkt)
}

// ListenAndServe serves on a UDP address such as "10.1.0.1:69".
func (s *Server) ListenAndServe(ctx context.Context, addr string) error {
	var lc net.ListenConfig
	conn, err := lc.ListenPacket(ctx, "udp4", addr)
	if err != nil {
		return fmt.Errorf("tftp listen %s: %w", addr, err)
	}
	return s.Serve(ctx, conn)
}

// serveRead runs one read transfer from its own socket.
func (s *Server) serveRead(ctx context.Context, local net.IP, remote net.UDPAddr, req request) {
	start := time.Now()
	log := s.log.With("file", req.filename, "client", remote.String())
	// Refusals come from a socket of their own, as a transfer would.
	refuse := func(code uint16, msg string) { s.reply(local, &remote, errorPacket(code, msg)) }
	if req.mode != "octet" && req.mode != "netascii" {
		log.Warn("tftp refused", "mode", req.mode)
		refuse(errIllegalOp, "mode "+req.mode+" not supported")
		return
	}
	r, err := s.Open(ctx, req.filename, remote)
	if err != nil {
		log.Warn("tftp refused", "err", err)
		code := uint16(errNotFound)
		if errors.Is(err, ErrBadPath) {
			code = errAccess
		}
		refuse(code, err.Error())
		return
	}
	if c, ok := r.(io.Closer); ok {
		defer c.Close()
	}
	maxBlock := s.cfg.MaxBlockSize
	if maxBlock <= 0 {
		maxBlock = blockSizeFor(local)
	}
	neg := negotiate(req.opts, maxBlock, s.cfg.MaxWindowSize)
	var src io.Reader = r
	size, sized := fileSize(r)
	if f, ok := r.(*os.File); ok {
		src = bufio.NewReaderSize(f, 256<<10) // large reads, not one per block
	}
	if req.mode == "netascii" {
		src, sized = netascii.ToReader(src), false // the size on the wire is unknown
	}
	if neg.tsize && sized {
		neg.oack = append(neg.oack, option{"tsize", strconv.FormatInt(size, 10)})
	}
	var conn link
	if neg.window == 1 && s.procs.take(s.cfg.LockStepThreads) {
		defer s.procs.add(-1)
		var bl *blockingLink
		if bl, err = newBlockingLink(ctx, local, remote); err == nil {
			bl.yield = s.procs.few
			conn = bl
		}
	} else {
		conn, err = newPollLink(ctx, local, remote)
	}
	if err != nil {
		log.Warn("tftp transfer socket", "err", err)
		return
	}
	defer conn.close()
	fail := func(code uint16, msg string) { _ = conn.send(errorPacket(code, msg)) }
	t := newTransfer(conn, src, neg, s.cfg.Timeout, s.cfg.Retries)
	if len(neg.oack) > 0 {
		if err := t.exchange(oackPacket(neg.oack)); err != nil {
			if ctx.Err() == nil {
				log.Warn("tftp transfer failed", "err", err)
			}
			return
		}
	}
	n, err := t.run()
	attrs := []any{"bytes", n, "blksize", neg.blksize, "windowsize", neg.window, "packets", t.sent, "resent", t.resent,
		"duration", time.Since(start)}
	if err != nil {
		if errors.Is(err, errClientGone) && t.eof && len(t.blocks) == 1 {
			// Only the final ACK is missing: the client has every block
			// and may simply not have waited (RFC 1350 lets it go).
			log.Info("tftp sent, final ack lost", attrs...)
			return
		}
		if ctx.Err() == nil && !errors.Is(err, errClientGone) {
			fail(errUndefined, err.Error())
		}
		log.Warn("tftp transfer failed", append(attrs, "err", err)...)
		return
	}
	log.Info("tftp sent", attrs...)
}

// blockSizeFor is the largest block that fits one IPv4 datagram on the
// interface holding local (MTU less the IP and UDP headers), 1468 (an
// Ethernet frame) when it cannot be found.
func blockSizeFor(local net.IP) int {
	ifs, err := net.Interfaces()
	if err != nil || local == nil {
		return 1468
	}
	for _, ifc := range ifs {
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && ipn.IP.Equal(local) {
				return min(max(ifc.MTU-28, minBlockSize), maxBlockSize)
			}
		}
	}
	return 1468
}
