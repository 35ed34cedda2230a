package dhcp_test

import (
	"context"
	"log/slog"
	"net"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"

	. "ironbark/pxe/dhcp"
)

// FuzzHandlePacket feeds arbitrary bytes to the packet handler: it must
// never panic, and any reply it builds must serialise and parse back.
// Seeds: testdata/fuzz/FuzzHandlePacket plus the packets below.
func FuzzHandlePacket(f *testing.F) {
	d := discover(mac(1), pxeBIOS()...)
	f.Add(d.ToBytes())
	f.Add(discover(mac(2), dhcpv4.WithUserClass("iPXE", false)).ToBytes())
	f.Add(discover(mac(3), dhcpv4.WithRelay(net.IPv4(10, 9, 0, 250))).ToBytes())
	inf, _ := dhcpv4.NewInform(mac(4), net.IPv4(10, 9, 0, 9))
	f.Add(inf.ToBytes())
	f.Add([]byte{1, 1, 6, 0})

	fb := &fakeBackend{discovery: true, static: map[string]Binding{mac(5).String(): {Hostname: "x"}}}
	// Discard logs: millions of dropped packets would fill a buffer.
	s, _ := newTestServer(f, fb, func(c *Config) { c.Logger = slog.New(slog.DiscardHandler) })
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, b []byte) {
		r := s.HandlePacket(ctx, b)
		if r.Decision.Action == "" {
			t.Fatalf("no decision for %x", b)
		}
		if r.Packet != nil {
			if r.Dest == nil {
				t.Fatalf("reply without destination: %+v", r.Decision)
			}
			if _, err := dhcpv4.FromBytes(r.Packet.ToBytes()); err != nil {
				t.Fatalf("reply does not parse: %v", err)
			}
		}
	})
}
