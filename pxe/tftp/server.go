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
	"strings"
	"sync"
	"time"

	"github.com/pin/tftp/v3"
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
	// MaxBlockSize caps the negotiated blksize (default: the interface
	// MTU, as pin/tftp computes it).
	MaxBlockSize int
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

// Serve answers read requests on conn until ctx ends, then waits for
// running transfers (each has its own socket) to finish or time out.
func (s *Server) Serve(ctx context.Context, conn net.PacketConn) error {
	srv := tftp.NewServer(func(name string, rf io.ReaderFrom) error { return s.read(ctx, name, rf) },
		func(name string, _ io.WriterTo) error {
			s.log.Warn("tftp write refused", "file", name)
			return errors.New("read-only server")
		})
	srv.SetTimeout(s.cfg.Timeout)
	srv.SetRetries(s.cfg.Retries)
	if s.cfg.MaxBlockSize > 0 {
		srv.SetBlockSize(s.cfg.MaxBlockSize)
	}
	srv.SetHook(statsHook{s.log})
	s.log.Info("tftp serving", "addr", conn.LocalAddr(), "root", s.cfg.Root)
	stop := context.AfterFunc(ctx, srv.Shutdown)
	defer stop()
	err := srv.Serve(conn)
	if ctx.Err() != nil {
		return nil
	}
	return err
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

func (s *Server) read(ctx context.Context, name string, rf io.ReaderFrom) error {
	start := time.Now()
	var remote net.UDPAddr
	if ot, ok := rf.(tftp.OutgoingTransfer); ok {
		remote = ot.RemoteAddr()
	}
	log := s.log.With("file", name, "client", remote.String())
	r, err := s.Open(ctx, name, remote)
	if err != nil {
		log.Warn("tftp refused", "err", err)
		return err
	}
	if c, ok := r.(io.Closer); ok {
		defer c.Close()
	}
	var src io.Reader = r
	if f, ok := r.(*os.File); ok {
		// Read files in large chunks rather than one read(2) per block;
		// the size (tsize) then has to be set by hand, the library only
		// finds it itself on a Seeker.
		if st, err := f.Stat(); err == nil {
			if ot, ok := rf.(tftp.OutgoingTransfer); ok {
				ot.SetSize(st.Size())
			}
			src = bufio.NewReaderSize(f, 256<<10)
		}
	}
	n, err := rf.ReadFrom(src)
	if err != nil {
		log.Warn("tftp transfer failed", "bytes", n, "err", err, "duration", time.Since(start))
		return nil // the library already sent the error to the client
	}
	log.Info("tftp sent", "bytes", n, "duration", time.Since(start))
	return nil
}

// statsHook logs the library's view of each transfer at Debug: the
// negotiated options and datagram counts on success, and failures it sees
// outside a transfer handler (malformed requests, client timeouts).
type statsHook struct{ log *slog.Logger }

func (h statsHook) OnSuccess(st tftp.TransferStats) {
	h.log.Debug("tftp stats", "file", st.Filename, "client", st.RemoteAddr, "options", fmt.Sprint(st.Opts),
		"datagrams", st.DatagramsSent, "acked", st.DatagramsAcked, "duration", st.Duration)
}

func (h statsHook) OnFailure(st tftp.TransferStats, err error) {
	h.log.Debug("tftp failure", "file", st.Filename, "client", st.RemoteAddr, "err", err)
}
