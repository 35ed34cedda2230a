package dhcp_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"

	"ironbark/internal/lab"
	"ironbark/internal/store"

	. "ironbark/pxe/dhcp"
	"ironbark/pxe/leases"
)

// runServer starts a server on the lab bridge (socket opened inside the
// namespace) and stops it when the returned function or the test ends.
func runServer(t *testing.T, ln *lab.LabNet, dbPath string, b Backend) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	db, err := store.Open(ctx, dbPath)
	if err != nil {
		t.Fatal(err)
	}
	pool, _ := PoolFor(ln.Addr)
	ls, err := leases.New(ctx, db, leases.Config{Pool: pool})
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{Interface: ln.Bridge, ServerIP: ln.Addr.Addr(), Subnet: ln.Addr,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))}, b, ls)
	if err != nil {
		t.Fatal(err)
	}
	var conn net.PacketConn
	if err := ln.NS.Do(func() (err error) { conn, err = Listen(ln.Bridge, 0); return err }); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.ServeConn(ctx, conn) }()
	var once bool
	stop = func() {
		if once {
			return
		}
		once = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
		db.Close()
	}
	t.Cleanup(stop)
	return stop
}

// client returns an nclient4 client on iface inside the namespace.
func client(t *testing.T, ns *lab.NetNS, iface string, hw net.HardwareAddr) *nclient4.Client {
	t.Helper()
	var c *nclient4.Client
	err := ns.Do(func() (err error) {
		c, err = nclient4.New(iface, nclient4.WithHWAddr(hw), nclient4.WithTimeout(time.Second), nclient4.WithRetry(2))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestServerInNamespace(t *testing.T) {
	lab.Require(t, "ip")
	ln := lab.NewLabNet(t, "")
	_, cli := ln.NS.Veth(t, ln.Bridge)
	// A second link not on the bridge: the server must not answer there.
	_, stray := ln.NS.Veth(t, "")
	dbPath := filepath.Join(t.TempDir(), "ironbark.db")
	known := mac(0x77)
	fb := &fakeBackend{static: map[string]Binding{}, discovery: true}
	stop := runServer(t, ln, dbPath, fb)
	ctx := context.Background()

	ipxe := dhcpv4.WithUserClass("iPXE", false)
	lease, err := client(t, ln.NS, cli, known).Request(ctx, ipxe)
	if err != nil {
		t.Fatalf("DORA: %v", err)
	}
	ip := lease.ACK.YourIPAddr
	if !ln.Addr.Contains(netip.MustParseAddr(ip.String())) || lease.ACK.HostName() != "compute-0-0" ||
		lease.ACK.BootFileNameOption() != "http://10.9.0.1:8080/boot/"+known.String()+".ipxe" {
		t.Fatalf("ack: %s", lease.ACK.Summary())
	}
	if got := lease.Offer.Options.Get(optIPXEEncap); string(got) != "\xb0\x01\x01" {
		t.Fatalf("offer option 175 = %x", got)
	}

	// Not on the bridge: no answer.
	if _, err := client(t, ln.NS, stray, mac(0x78)).Request(ctx); err == nil {
		t.Fatal("server answered on an interface it is not bound to")
	}

	// Restart the server on the same database: the client keeps its
	// address, and a new client does not get it.
	stop()
	runServer(t, ln, dbPath, fb)
	again, err := client(t, ln.NS, cli, known).Request(ctx)
	if err != nil || !again.ACK.YourIPAddr.Equal(ip) {
		t.Fatalf("after restart: %v %v, want %s", again, err, ip)
	}
	other, err := client(t, ln.NS, cli, mac(0x79)).Request(ctx)
	if err != nil || other.ACK.YourIPAddr.Equal(ip) {
		t.Fatalf("second client: %v %v", other, err)
	}

	// Discovery off: unknown MACs get nothing.
	fb.mu.Lock()
	fb.discovery = false
	fb.mu.Unlock()
	_, err = client(t, ln.NS, cli, mac(0x7a)).Request(ctx)
	if err == nil || errors.Is(err, context.Canceled) {
		t.Fatalf("unknown MAC with discovery off got an answer: %v", err)
	}
}
