package ra

import (
	"context"
	"log/slog"
	"net"
	"os"
	"testing"
	"time"

	"github.com/mdlayher/ndp"
	"golang.org/x/net/ipv6"

	"ironbark/internal/lab"
)

func TestMessage(t *testing.T) {
	ifi := &net.Interface{HardwareAddr: net.HardwareAddr{2, 0, 0, 0, 0, 1}}
	b, err := ndp.MarshalMessage(Message(ifi))
	if err != nil {
		t.Fatal(err)
	}
	m, err := ndp.ParseMessage(b)
	if err != nil {
		t.Fatal(err)
	}
	ra := m.(*ndp.RouterAdvertisement)
	if ra.RouterLifetime != 0 || ra.ManagedConfiguration || ra.OtherConfiguration || len(ra.Options) != 1 {
		t.Fatalf("%+v", ra)
	}
}

// listenRetry opens an ndp socket in the namespace, waiting for the
// link-local address to appear after the link comes up.
func listenRetry(t *testing.T, ns *lab.NetNS, open func() error) {
	t.Helper()
	var err error
	for range 50 {
		if err = ns.Do(open); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("listen: %v", err)
}

func TestAdvertiseInNamespace(t *testing.T) {
	lab.Require(t, "ip")
	ln := lab.NewLabNet(t, "")
	_, cliName := ln.NS.Veth(t, ln.Bridge)

	a, err := New(Config{Interface: ln.Bridge, Interval: 500 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	var (
		srv    *ndp.Conn
		srvIfi *net.Interface
	)
	listenRetry(t, ln.NS, func() (err error) { srv, srvIfi, err = Listen(ln.Bridge); return err })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Serve(ctx, srv, srvIfi) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})

	var cli *ndp.Conn
	listenRetry(t, ln.NS, func() error {
		ifi, err := net.InterfaceByName(cliName)
		if err != nil {
			return err
		}
		cli, _, err = ndp.Listen(ifi, ndp.LinkLocal)
		return err
	})
	defer cli.Close()
	var f ipv6.ICMPFilter
	f.SetAll(true)
	f.Accept(ipv6.ICMPTypeRouterAdvertisement)
	if err := cli.SetICMPFilter(&f); err != nil {
		t.Fatal(err)
	}
	// Solicit, as iPXE does when the link comes up, and expect an answer.
	if err := cli.WriteTo(&ndp.RouterSolicitation{}, nil, allRouters); err != nil {
		t.Fatal(err)
	}
	if err := cli.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	for seen := 0; seen < 2; {
		m, _, from, err := cli.ReadFrom()
		if err != nil {
			t.Fatalf("waiting for router advertisements: %v", err)
		}
		ra, ok := m.(*ndp.RouterAdvertisement)
		if !ok {
			continue
		}
		if ra.RouterLifetime != 0 || !from.IsLinkLocalUnicast() {
			t.Fatalf("advertisement from %s: %+v", from, ra)
		}
		lla, ok := ra.Options[0].(*ndp.LinkLayerAddress)
		if !ok || lla.Addr.String() != srvIfi.HardwareAddr.String() {
			t.Fatalf("source link-layer option %+v, want %s", ra.Options, srvIfi.HardwareAddr)
		}
		seen++
	}
}
