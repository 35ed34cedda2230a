package httplimit

import (
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

// Limits are what one listener allows a client. Zero fields take the
// defaults of Default.
type Limits struct {
	// ReadHeaderTimeout bounds reading a request's headers.
	ReadHeaderTimeout time.Duration
	// ReadTimeout bounds reading a whole request, body included: a
	// stalled upload is cut off after it.
	ReadTimeout time.Duration
	// WriteTimeout bounds a response, from the end of the request's
	// headers; it must exceed the longest long-poll the handler does.
	// Negative means none (a listener that streams large blobs).
	WriteTimeout time.Duration
	// IdleTimeout closes a keep-alive connection that sends nothing.
	IdleTimeout time.Duration
	// PerClient caps the connections one client IP holds open at once.
	PerClient int
}

// defaults are what the controller's listeners use unless told otherwise.
var defaults = Limits{
	ReadHeaderTimeout: 10 * time.Second,
	ReadTimeout:       2 * time.Minute,
	WriteTimeout:      2 * time.Minute,
	IdleTimeout:       2 * time.Minute,
	PerClient:         64,
}

// Default returns the default limits.
func Default() Limits { return defaults }

func (l Limits) withDefaults() Limits {
	d := Default()
	if l.ReadHeaderTimeout <= 0 {
		l.ReadHeaderTimeout = d.ReadHeaderTimeout
	}
	if l.ReadTimeout <= 0 {
		l.ReadTimeout = d.ReadTimeout
	}
	if l.WriteTimeout == 0 {
		l.WriteTimeout = d.WriteTimeout
	}
	if l.IdleTimeout <= 0 {
		l.IdleTimeout = d.IdleTimeout
	}
	if l.PerClient <= 0 {
		l.PerClient = d.PerClient
	}
	return l
}

// Apply sets the server's timeouts.
func (l Limits) Apply(srv *http.Server) {
	l = l.withDefaults()
	srv.ReadHeaderTimeout = l.ReadHeaderTimeout
	srv.ReadTimeout = l.ReadTimeout
	srv.WriteTimeout = max(l.WriteTimeout, 0)
	srv.IdleTimeout = l.IdleTimeout
}

// Listener wraps ln so that each client IP holds at most l.PerClient
// connections; a connection past the cap is closed at once (the client
// sees a reset or EOF) and logged once per burst. Wrap the TCP listener,
// below any TLS, so refused connections cost no handshake.
func (l Limits) Listener(ln net.Listener, log *slog.Logger) net.Listener {
	l = l.withDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &listener{Listener: ln, max: l.PerClient, log: log, open: map[string]int{}}
}

type listener struct {
	net.Listener
	max int
	log *slog.Logger

	mu      sync.Mutex
	open    map[string]int  // connections held per client IP
	refused map[string]bool // clients refused since they last got in
}

func (ln *listener) Accept() (net.Conn, error) {
	for {
		c, err := ln.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := clientIP(c.RemoteAddr())
		ln.mu.Lock()
		if ln.open[ip] >= ln.max {
			first := !ln.refused[ip]
			if ln.refused == nil {
				ln.refused = map[string]bool{}
			}
			ln.refused[ip] = true
			ln.mu.Unlock()
			if first {
				ln.log.Warn("connection refused: client holds too many", "client", ip, "max", ln.max)
			}
			_ = c.Close()
			continue
		}
		ln.open[ip]++
		delete(ln.refused, ip)
		ln.mu.Unlock()
		return &conn{Conn: c, release: func() { ln.release(ip) }}, nil
	}
}

func (ln *listener) release(ip string) {
	ln.mu.Lock()
	defer ln.mu.Unlock()
	if ln.open[ip]--; ln.open[ip] <= 0 {
		delete(ln.open, ip)
	}
}

func clientIP(a net.Addr) string {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.IP.String()
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}

// conn gives its client's slot back once, when closed.
type conn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
