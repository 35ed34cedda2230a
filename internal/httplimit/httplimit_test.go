package httplimit

import (
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// stall opens a connection from the given local address and sends a
// request whose body never comes.
func stall(t *testing.T, from, to string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	c, err := d.Dial("tcp", to)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\npartial"); err != nil {
		t.Fatal(err)
	}
	return c
}

// closedByServer reports whether the server closed c: a read returns EOF
// or a reset (the watchdog only stops a test that would otherwise hang).
func closedByServer(c net.Conn) bool {
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	_, err := io.ReadAll(c)
	var ne net.Error
	return !(errors.As(err, &ne) && ne.Timeout())
}

func serve(t *testing.T, l Limits) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, "ok")
	})}
	l.Apply(srv)
	go func() { _ = srv.Serve(l.Listener(ln, nil)) }()
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

func TestPerClientCap(t *testing.T) {
	addr := serve(t, Limits{PerClient: 3})
	var held []net.Conn
	for i := 0; i < 3; i++ {
		held = append(held, stall(t, "127.0.0.2", addr))
	}
	over := stall(t, "127.0.0.2", addr)
	if !closedByServer(over) {
		t.Fatal("a fourth connection from a client holding three was kept")
	}
	// Another client is not affected.
	resp, err := http.Get("http://" + addr + "/")
	if err != nil {
		t.Fatalf("other client: %v", err)
	}
	resp.Body.Close()
	// A slot comes back when its connection closes.
	held[0].Close()
	var again net.Conn
	for i := 0; ; i++ { // the server notices the close asynchronously
		again = stall(t, "127.0.0.2", addr)
		_ = again.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		_, err := again.Read(make([]byte, 1))
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			break // kept open: the slot was free
		}
		if i == 100 {
			t.Fatal("a freed slot was never given back")
		}
	}
}

func TestStalledUploadIsCut(t *testing.T) {
	addr := serve(t, Limits{ReadTimeout: 300 * time.Millisecond})
	c := stall(t, "127.0.0.2", addr)
	if !closedByServer(c) {
		t.Fatal("a stalled upload was held past the read timeout")
	}
}
