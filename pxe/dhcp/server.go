package dhcp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"
)

// Config configures a Server. Interface, ServerIP and Subnet are required.
type Config struct {
	// Interface is the only interface the server answers on (the socket is
	// bound to it with SO_BINDTODEVICE).
	Interface string
	// ServerIP is the server's address on Interface: server identifier
	// (option 54) and default next-server (siaddr).
	ServerIP netip.Addr
	// Subnet is the served network; option 1 comes from it. Relayed
	// requests are answered only when their giaddr lies inside it.
	Subnet netip.Prefix
	// Router (option 3) is sent only when set.
	Router netip.Addr
	// DNS servers (option 6) and DomainName (option 15), when set.
	DNS        []netip.Addr
	DomainName string
	// LeaseTime is the default lease duration (default 1h).
	LeaseTime time.Duration
	// BIOSBootFile is the TFTP boot file for BIOS PXE clients (default
	// "undionly.kpxe"); UEFIBootFile for x86-64 UEFI (default
	// "snponly.efi"; pxe sets "ipxe.efi" when snponly.efi is absent).
	BIOSBootFile string
	UEFIBootFile string
	// Port is the UDP port to listen on (default 67); tests and
	// benchmarks may change it.
	Port int
	// Workers is how many requests are handled at once (default 64). It
	// also bounds the lease store's group commits: an ACK's worker waits
	// for its commit, so one commit can hold at most Workers ACKs (with
	// 8, commits held under two ACKs on average and the store's
	// per-transaction cost dominated a DORA).
	Workers int
	// Logger receives one line per decision at Debug, ignored MACs once at
	// Info, and dropped packets and failures at Warn/Error, at most one
	// line per MAC per LogEvery (with how many were suppressed meanwhile).
	// Default: slog.Default().
	Logger *slog.Logger
	// LogEvery bounds the drop and error lines per MAC (default 1 min): a
	// flood must not flood the log.
	LogEvery time.Duration
	// Now is the clock of the log limit (default time.Now); tests set it.
	Now func() time.Time
	// OnDecision, when set, is called after each handled request (for
	// discovery screens, metrics and tests). It must not block.
	OnDecision func(Decision)
}

func (c *Config) setDefaults() error {
	if !c.ServerIP.Is4() {
		return fmt.Errorf("dhcp config: server IP %v is not IPv4", c.ServerIP)
	}
	if !c.Subnet.IsValid() || !c.Subnet.Addr().Is4() {
		return fmt.Errorf("dhcp config: subnet %v is not an IPv4 prefix", c.Subnet)
	}
	c.Subnet = c.Subnet.Masked()
	if !c.Subnet.Contains(c.ServerIP) {
		return fmt.Errorf("dhcp config: server IP %s outside subnet %s", c.ServerIP, c.Subnet)
	}
	if c.LeaseTime <= 0 {
		c.LeaseTime = time.Hour
	}
	if c.BIOSBootFile == "" {
		c.BIOSBootFile = "undionly.kpxe"
	}
	if c.UEFIBootFile == "" {
		c.UEFIBootFile = "snponly.efi"
	}
	if c.Port == 0 {
		c.Port = dhcpv4.ServerPort
	}
	if c.Workers <= 0 {
		c.Workers = 64
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.LogEvery <= 0 {
		c.LogEvery = time.Minute
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

// Server is the DHCPv4 server of one interface.
type Server struct {
	cfg     Config
	backend Backend
	leases  Leases
	log     *slog.Logger

	ignored ignoredSet
	noisy   logLimiter
}

// New returns a server answering with backend's decisions and leases from
// the lease store (whose pool must lie inside cfg.Subnet).
func New(cfg Config, backend Backend, leases Leases) (*Server, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if backend == nil || leases == nil {
		return nil, errors.New("dhcp: New needs a backend and a lease store")
	}
	if p := leases.Pool(); p.Size() > 0 && (!cfg.Subnet.Contains(p.Start) || !cfg.Subnet.Contains(p.End)) {
		return nil, fmt.Errorf("dhcp config: pool %s-%s outside subnet %s", p.Start, p.End, cfg.Subnet)
	}
	return &Server{cfg: cfg, backend: backend, leases: leases, log: cfg.Logger.With("iface", cfg.Interface),
		ignored: ignoredSet{seen: map[string]struct{}{}, max: 65536},
		noisy:   logLimiter{every: cfg.LogEvery, last: map[string]*limited{}, max: 65536, now: cfg.Now}}, nil
}

// Serve listens on cfg.Interface, port cfg.Port, and answers until ctx
// ends. The socket is bound to the interface, so requests arriving on
// other interfaces are never seen.
func (s *Server) Serve(ctx context.Context) error {
	if s.cfg.Interface == "" {
		return errors.New("dhcp serve: no interface configured")
	}
	conn, err := Listen(s.cfg.Interface, s.cfg.Port)
	if err != nil {
		return err
	}
	return s.ServeConn(ctx, conn)
}

// Listen opens a DHCP server socket: UDP port (67 when 0) on all
// addresses, bound to iface with SO_BINDTODEVICE, broadcast allowed. Use
// it with ServeConn when the socket must be made elsewhere (inside a
// network namespace, in tests). Broadcast replies leave through a
// link-layer socket on iface, opened here too (see linkConn), or through
// the UDP socket when the process may not open one (no CAP_NET_RAW).
func Listen(iface string, port int) (net.PacketConn, error) {
	if port == 0 {
		port = dhcpv4.ServerPort
	}
	conn, err := server4.NewIPv4UDPConn(iface, &net.UDPAddr{Port: port})
	if err != nil {
		return nil, fmt.Errorf("dhcp listen on %s: %w", iface, err)
	}
	lc, err := newLinkConn(conn, iface, port)
	if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES) {
		// No CAP_NET_RAW: broadcasts go through the UDP socket, which
		// works, at a higher CPU cost per reply.
		return conn, nil
	}
	if err != nil {
		conn.Close()
		return nil, err
	}
	return lc, nil
}

// ServeConn answers requests read from conn until ctx ends, then closes
// conn. Replies are written to conn (broadcast where RFC 2131 says so).
// Each of the Workers goroutines reads a request from conn, answers it
// and reads the next: no hand-off between reading and answering, so a
// request waits for no other thread to be scheduled.
func (s *Server) ServeConn(ctx context.Context, conn net.PacketConn) error {
	s.log.Info("dhcp serving", "addr", conn.LocalAddr(), "server_ip", s.cfg.ServerIP, "subnet", s.cfg.Subnet,
		"pool", fmt.Sprintf("%s-%s", s.leases.Pool().Start, s.leases.Pool().End))
	if lc, ok := conn.(*linkConn); ok {
		lc.src = s.cfg.ServerIP // before the workers start: read-only from here
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	errc := make(chan error, s.cfg.Workers)
	var wg sync.WaitGroup
	for range s.cfg.Workers {
		wg.Go(func() {
			buf := make([]byte, 1500)
			for {
				n, _, err := conn.ReadFrom(buf)
				if err != nil {
					if ctx.Err() == nil {
						errc <- fmt.Errorf("dhcp read: %w", err)
						conn.Close() // stops the other workers
					}
					return
				}
				// A copy: the parsed request and what is made of it
				// (Decision, OnDecision) may keep slices of it.
				r := s.HandlePacket(ctx, bytes.Clone(buf[:n]))
				if r.Packet == nil {
					continue
				}
				if _, err := conn.WriteTo(r.Packet.ToBytes(), r.Dest); err != nil && ctx.Err() == nil {
					s.log.Warn("dhcp send", "dest", r.Dest, "mac", r.Decision.MAC, "err", err)
				}
			}
		})
	}
	wg.Wait()
	select {
	case err := <-errc:
		return err
	default:
		return nil
	}
}

// ignoredSet remembers MACs already logged as ignored, so each is logged
// once (bounded: when full it starts over, logging each MAC once more).
type ignoredSet struct {
	mu   sync.Mutex
	seen map[string]struct{}
	max  int
}

// first reports whether mac is new to the set, and adds it.
func (s *ignoredSet) first(mac string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.seen[mac]; ok {
		return false
	}
	if len(s.seen) >= s.max {
		clear(s.seen)
	}
	s.seen[mac] = struct{}{}
	return true
}

// forget lets mac be logged again (it was answered since).
func (s *ignoredSet) forget(mac string) {
	s.mu.Lock()
	delete(s.seen, mac)
	s.mu.Unlock()
}

// logLimiter lets one line per key (a MAC) through per period and counts
// the rest, so the next line can say how many were suppressed. Bounded:
// when full it starts over.
type logLimiter struct {
	mu    sync.Mutex
	every time.Duration
	last  map[string]*limited
	max   int
	now   func() time.Time
}

type limited struct {
	at         time.Time
	suppressed int
}

// allow reports whether a line for key may be logged now and how many were
// suppressed since the last one that was.
func (l *logLimiter) allow(key string) (ok bool, suppressed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	e := l.last[key]
	if e == nil {
		if len(l.last) >= l.max {
			clear(l.last)
		}
		l.last[key] = &limited{at: now}
		return true, 0
	}
	if now.Sub(e.at) < l.every {
		e.suppressed++
		return false, 0
	}
	n := e.suppressed
	e.at, e.suppressed = now, 0
	return true, n
}
