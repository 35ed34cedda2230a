package installer_test

import (
	"context"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4/server4"

	"ironbark/installer"
	"ironbark/internal/lab"
	"ironbark/internal/store/storetest"
	"ironbark/pxe"
	"ironbark/pxe/dhcp"
	"ironbark/pxe/leases"
)

// TestNetworkDHCP brings up a NIC the way the installer does when the
// kernel command line carries no address: by DHCP (nclient4) against
// ironbark's own DHCP server and discovery, across a real veth link
// between two namespaces.
func TestNetworkDHCP(t *testing.T) {
	lab.Require(t, "ip")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ln := lab.NewLabNet(t, "")
	client := lab.NewNetNS(t)
	ln.NS.Link(t, ln.Bridge, client)

	db := storetest.SQLite(t, pxe.Migrations())
	hosts := pxe.NewHosts(db)
	disc := pxe.NewDiscovery(db, hosts)
	if _, err := disc.Start(ctx, "compute", "c1", 0, 0); err != nil {
		t.Fatal(err)
	}
	subnet := ln.Addr.Masked()
	pool, err := dhcp.PoolFor(subnet)
	if err != nil {
		t.Fatal(err)
	}
	ls, err := leases.New(ctx, db, leases.Config{Pool: pool})
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	srv, err := dhcp.New(dhcp.Config{Interface: ln.Bridge, ServerIP: ln.Addr.Addr(), Subnet: subnet, Logger: log},
		&pxe.DHCPBackend{Hosts: hosts, Discovery: disc, Leases: ls, BaseURL: "http://" + ln.Addr.Addr().String(), Log: log},
		ls)
	if err != nil {
		t.Fatal(err)
	}
	var conn net.PacketConn
	if err := ln.NS.Do(func() error {
		var err error
		conn, err = server4.NewIPv4UDPConn(ln.Bridge, &net.UDPAddr{Port: 67})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	sctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { _ = srv.ServeConn(sctx, conn); close(done) }()
	t.Cleanup(func() { stop(); <-done })

	var ip net.IP
	if err := client.Do(func() error {
		var err error
		ip, err = installer.Network(ctx, installer.Config{}, log)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	h, err := hosts.Get(ctx, "compute-0-0")
	if err != nil {
		t.Fatal(err)
	}
	if h.IP != ip.String() {
		t.Fatalf("installer got %s by DHCP, host compute-0-0 has %s", ip, h.IP)
	}
}
