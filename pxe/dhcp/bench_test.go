package dhcp_test

import (
	"context"
	"net/netip"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"

	. "ironbark/pxe/dhcp"
)

// BenchmarkHandleDORA: one full DISCOVER+REQUEST through the handler per
// iteration, with a new MAC each time (a new lease, two SQLite
// transactions), no sockets.
func BenchmarkHandleDORA(b *testing.B) {
	big := Pool{Start: serverPool.Start, End: Pool{Start: serverPool.Start}.Nth(1 << 20)}
	s, _, _ := newTestServerPool(b, &fakeBackend{discovery: true}, func(c *Config) { c.Subnet = netip.MustParsePrefix("10.0.0.0/8") }, big)
	ctx := context.Background()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		m := mac(i)
		d := discover(m, dhcpv4.WithOption(dhcpv4.OptClientArch(iana.INTEL_X86PC)))
		off := s.HandlePacket(ctx, d.ToBytes())
		if off.Decision.Action != ActOffer {
			b.Fatalf("%+v", off.Decision)
		}
		ack := s.HandlePacket(ctx, requestAs(d, off.Packet).ToBytes())
		if ack.Decision.Action != ActAck {
			b.Fatalf("%+v", ack.Decision)
		}
	}
}

// BenchmarkHandleRenew: a known client renewing its lease (the steady
// state of a running cluster).
func BenchmarkHandleRenew(b *testing.B) {
	s, _ := newTestServer(b, &fakeBackend{discovery: true}, nil)
	ctx := context.Background()
	d := discover(mac(1))
	off := s.Handle(ctx, d)
	ack := s.Handle(ctx, requestAs(d, off.Packet))
	renew, err := dhcpv4.NewRenewFromAck(ack.Packet)
	if err != nil {
		b.Fatal(err)
	}
	raw := renew.ToBytes()
	b.ReportAllocs()
	for b.Loop() {
		if r := s.HandlePacket(ctx, raw); r.Decision.Action != ActAck {
			b.Fatalf("%+v", r.Decision)
		}
	}
}

// BenchmarkHandleIgnored: an unknown MAC while discovery is off, the
// cost of a storm of foreign PXE clients.
func BenchmarkHandleIgnored(b *testing.B) {
	s, _ := newTestServer(b, &fakeBackend{}, nil)
	raw := discover(mac(1)).ToBytes()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if r := s.HandlePacket(ctx, raw); r.Decision.Action != ActIgnore {
			b.Fatalf("%+v", r.Decision)
		}
	}
}
