package dhcp_test

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"

	"ironbark/internal/store/storetest"

	"ironbark/internal/lab"
	. "ironbark/pxe/dhcp"
	"ironbark/pxe/leases"
)

// fakeBackend knows some MACs statically and, with discovery on, gives
// every other MAC a pool address and a compute-0-N name.
type fakeBackend struct {
	mu        sync.Mutex
	static    map[string]Binding
	discovery bool
	named     map[string]string
	calls     []ClientInfo
}

func (f *fakeBackend) Assign(_ context.Context, c ClientInfo) (*Binding, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, c)
	if b, ok := f.static[c.MAC.String()]; ok {
		return &b, nil
	}
	if !f.discovery {
		return nil, ErrIgnore
	}
	if f.named == nil {
		f.named = map[string]string{}
	}
	name, ok := f.named[c.MAC.String()]
	if !ok {
		name = "compute-0-" + string(rune('0'+len(f.named)))
		f.named[c.MAC.String()] = name
	}
	b := &Binding{Hostname: name}
	if c.IsIPXE {
		b.BootFile = "http://10.9.0.1:8080/boot/" + c.MAC.String() + ".ipxe"
	}
	return b, nil
}

func newTestServer(t testing.TB, fb *fakeBackend, mod func(*Config)) (*Server, *lab.Buffer) {
	t.Helper()
	s, _, logs := newTestServerPool(t, fb, mod, serverPool)
	return s, logs
}

// newTestServerPool is a server with its leases in a fresh SQLite store.
func newTestServerPool(t testing.TB, fb *fakeBackend, mod func(*Config), pool Pool) (*Server, *leases.Store, *lab.Buffer) {
	t.Helper()
	db := storetest.SQLite(t, leases.Migrations())
	ls, err := leases.New(context.Background(), db, leases.Config{Pool: pool})
	if err != nil {
		t.Fatal(err)
	}
	logs := &lab.Buffer{}
	cfg := Config{
		Interface: "test0",
		ServerIP:  netip.MustParseAddr("10.9.0.1"),
		Subnet:    netip.MustParsePrefix("10.9.0.0/24"),
		Logger:    slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if mod != nil {
		mod(&cfg)
	}
	s, err := New(cfg, fb, ls)
	if err != nil {
		t.Fatal(err)
	}
	return s, ls, logs
}

func mac(i int) net.HardwareAddr {
	return net.HardwareAddr{0x52, 0x54, 0x00, byte(i >> 16), byte(i >> 8), byte(i)}
}

var serverPool = Pool{Start: netip.MustParseAddr("10.9.0.100"), End: netip.MustParseAddr("10.9.0.199")}

func discover(m net.HardwareAddr, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	d, err := dhcpv4.NewDiscovery(m, mods...)
	if err != nil {
		panic(err)
	}
	return d
}

func pxeBIOS() []dhcpv4.Modifier {
	return []dhcpv4.Modifier{
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00000:UNDI:002001")),
		dhcpv4.WithOption(dhcpv4.OptClientArch(iana.INTEL_X86PC)),
	}
}

func request(offer *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
	r, err := dhcpv4.NewRequestFromOffer(offer)
	if err != nil {
		panic(err)
	}
	return r
}

// requestAs is the REQUEST a client sends after DISCOVER d and offer:
// like real firmware it repeats its class, architecture and user class.
func requestAs(d, offer *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
	r := request(offer)
	for _, code := range []dhcpv4.OptionCode{dhcpv4.OptionClassIdentifier, dhcpv4.OptionClientSystemArchitectureType, dhcpv4.OptionUserClassInformation} {
		if v := d.Options.Get(code); v != nil {
			r.UpdateOption(dhcpv4.OptGeneric(code, v))
		}
	}
	return r
}

// optIPXEEncap is iPXE's encapsulated options (175).
var optIPXEEncap = dhcpv4.GenericOptionCode(175)

func ipxeEncap(p *dhcpv4.DHCPv4) []byte { return p.Options.Get(optIPXEEncap) }

func TestHandlePXEFlavours(t *testing.T) {
	fb := &fakeBackend{discovery: true}
	s, _ := newTestServer(t, fb, nil)
	ctx := context.Background()
	cases := []struct {
		name     string
		mods     []dhcpv4.Modifier
		bootFile string
		ipxe     bool
		pxeClass bool
	}{
		{"bios pxe", pxeBIOS(), "undionly.kpxe", false, true},
		{"uefi x86-64 (7)", []dhcpv4.Modifier{
			dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00007:UNDI:003016")),
			dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_X86_64))}, "snponly.efi", false, true},
		{"uefi bc (9)", []dhcpv4.Modifier{dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_BC))}, "snponly.efi", false, true},
		{"ipxe", append(pxeBIOS(), dhcpv4.WithUserClass("iPXE", false)),
			"http://10.9.0.1:8080/boot/52:54:00:00:00:03.ipxe", true, false},
		{"plain os client", nil, "", false, false},
		{"arm64 uefi: no loader", []dhcpv4.Modifier{dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_ARM64))}, "", false, false},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := s.Handle(ctx, discover(mac(i), tc.mods...))
			if r.Decision.Action != ActOffer || r.Packet == nil {
				t.Fatalf("decision %+v", r.Decision)
			}
			p := r.Packet
			if p.MessageType() != dhcpv4.MessageTypeOffer || !serverPool.Contains(netip.MustParseAddr(p.YourIPAddr.String())) {
				t.Fatalf("offer %s", p.Summary())
			}
			if p.BootFileName != tc.bootFile || p.BootFileNameOption() != tc.bootFile {
				t.Errorf("boot file %q / option %q, want %q", p.BootFileName, p.BootFileNameOption(), tc.bootFile)
			}
			if tc.bootFile != "" && !p.ServerIPAddr.Equal(net.IPv4(10, 9, 0, 1)) {
				t.Errorf("siaddr %s", p.ServerIPAddr)
			}
			if got := ipxeEncap(p); tc.ipxe != bytes.Equal(got, []byte{176, 1, 1}) {
				t.Errorf("option 175 = %v (ipxe %v)", got, tc.ipxe)
			}
			if got := p.ClassIdentifier() == "PXEClient"; got != tc.pxeClass {
				t.Errorf("option 60 %q", p.ClassIdentifier())
			}
			if got := p.Options.Get(dhcpv4.OptionVendorSpecificInformation); tc.pxeClass != bytes.Equal(got, []byte{6, 1, 8, 255}) {
				t.Errorf("option 43 = %v", got)
			}
			if !p.ServerIdentifier().Equal(net.IPv4(10, 9, 0, 1)) || p.SubnetMask().String() != "ffffff00" ||
				p.IPAddressLeaseTime(0) != time.Hour || p.Options.Has(dhcpv4.OptionRouter) {
				t.Errorf("network options: %s", p.Summary())
			}
			if p.HostName() != "compute-0-"+string(rune('0'+i)) {
				t.Errorf("hostname %q", p.HostName())
			}
			if !r.Dest.IP.Equal(net.IPv4bcast) || r.Dest.Port != 68 {
				t.Errorf("dest %v", r.Dest)
			}
		})
	}
}

func TestHandleDORAAndLifecycle(t *testing.T) {
	m := mac(42)
	fb := &fakeBackend{static: map[string]Binding{
		m.String(): {IP: netip.MustParseAddr("10.9.0.20"), Hostname: "compute-0-7", LeaseTime: 2 * time.Hour},
	}, discovery: true}
	s, ls, _ := newTestServerPool(t, fb, func(c *Config) {
		c.Router = netip.MustParseAddr("10.9.0.254")
		c.DNS = []netip.Addr{netip.MustParseAddr("10.9.0.1")}
		c.DomainName = "cluster.local"
	}, serverPool)
	ctx := context.Background()

	d := discover(m, pxeBIOS()...)
	off := s.Handle(ctx, d)
	if off.Packet == nil || !off.Packet.YourIPAddr.Equal(net.IPv4(10, 9, 0, 20)) {
		t.Fatalf("static offer: %+v", off.Decision)
	}
	p := off.Packet
	if len(p.Router()) != 1 || !p.Router()[0].Equal(net.IPv4(10, 9, 0, 254)) || p.DomainName() != "cluster.local" ||
		len(p.DNS()) != 1 || p.IPAddressLeaseTime(0) != 2*time.Hour {
		t.Fatalf("options: %s", p.Summary())
	}
	ack := s.Handle(ctx, requestAs(d, p))
	if ack.Decision.Action != ActAck || ack.Packet.MessageType() != dhcpv4.MessageTypeAck ||
		!ack.Packet.YourIPAddr.Equal(net.IPv4(10, 9, 0, 20)) || ack.Packet.BootFileName != "undionly.kpxe" {
		t.Fatalf("ack: %+v %v", ack.Decision, ack.Packet)
	}
	// A pool client asking for the static host's address gets a NAK,
	// broadcast.
	other := mac(43)
	req := request(p)
	req.ClientHWAddr = other
	nak := s.Handle(ctx, req)
	if nak.Decision.Action != ActNak || nak.Packet.MessageType() != dhcpv4.MessageTypeNak || !nak.Dest.IP.Equal(net.IPv4bcast) {
		t.Fatalf("nak: %+v", nak.Decision)
	}
	// A request meant for another server is not ours.
	req = request(p)
	req.UpdateOption(dhcpv4.OptServerIdentifier(net.IPv4(10, 9, 0, 2)))
	if r := s.Handle(ctx, req); r.Packet != nil || r.Decision.Action != ActDrop {
		t.Fatalf("foreign server id: %+v", r.Decision)
	}
	// Renewal: unicast to ciaddr.
	renew, err := dhcpv4.NewRenewFromAck(ack.Packet)
	if err != nil {
		t.Fatal(err)
	}
	r := s.Handle(ctx, renew)
	if r.Decision.Action != ActAck || !r.Dest.IP.Equal(net.IPv4(10, 9, 0, 20)) || r.Dest.Port != 68 {
		t.Fatalf("renew: %+v dest %v", r.Decision, r.Dest)
	}
	// Release of a pool lease; the static one stays.
	poff := s.Handle(ctx, discover(other))
	pack := s.Handle(ctx, request(poff.Packet))
	rel, _ := dhcpv4.NewReleaseFromACK(pack.Packet)
	if r := s.Handle(ctx, rel); r.Decision.Action != ActRelease || r.Packet != nil {
		t.Fatalf("release: %+v", r.Decision)
	}
	if l, err := ls.ByMAC(ctx, other); err != nil || l.State != StateReleased {
		t.Fatalf("after release: %+v", l)
	}
	// INFORM: options, no address.
	inf, _ := dhcpv4.NewInform(other, net.IPv4(10, 9, 0, 77))
	if r := s.Handle(ctx, inf); r.Decision.Action != ActInform || !r.Packet.YourIPAddr.IsUnspecified() ||
		!r.Dest.IP.Equal(net.IPv4(10, 9, 0, 77)) {
		t.Fatalf("inform: %+v", r.Decision)
	}
	// DECLINE marks the address.
	dec, _ := dhcpv4.New(dhcpv4.WithMessageType(dhcpv4.MessageTypeDecline), dhcpv4.WithHwAddr(other),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(pack.Packet.YourIPAddr)),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(10, 9, 0, 1))))
	if r := s.Handle(ctx, dec); r.Decision.Action != ActDecline {
		t.Fatalf("decline: %+v", r.Decision)
	}
}

func TestHandleIgnoresAndRelays(t *testing.T) {
	fb := &fakeBackend{}
	s, logs := newTestServer(t, fb, nil)
	ctx := context.Background()
	for range 3 {
		if r := s.Handle(ctx, discover(mac(7), pxeBIOS()...)); r.Packet != nil || r.Decision.Action != ActIgnore {
			t.Fatalf("unknown MAC with discovery off: %+v", r.Decision)
		}
	}
	if n := strings.Count(logs.String(), "ignoring unknown client"); n != 1 {
		t.Fatalf("ignored MAC logged %d times, want once:\n%s", n, logs)
	}
	fb.discovery = true
	// Relayed from our own subnet: answered to the relay.
	r := s.Handle(ctx, discover(mac(8), dhcpv4.WithRelay(net.IPv4(10, 9, 0, 250))))
	if r.Decision.Action != ActOffer || !r.Dest.IP.Equal(net.IPv4(10, 9, 0, 250)) || r.Dest.Port != 67 {
		t.Fatalf("relay from our subnet: %+v %v", r.Decision, r.Dest)
	}
	// Relayed from elsewhere: not ours.
	r = s.Handle(ctx, discover(mac(9), dhcpv4.WithRelay(net.IPv4(192, 168, 5, 1))))
	if r.Packet != nil || r.Decision.Action != ActDrop {
		t.Fatalf("foreign relay: %+v", r.Decision)
	}
	// Garbage and odd packets are dropped.
	for _, b := range [][]byte{nil, {1, 2, 3}, bytes.Repeat([]byte{0xff}, 300)} {
		if r := s.HandlePacket(ctx, b); r.Packet != nil || r.Decision.Action != ActDrop {
			t.Fatalf("garbage %x: %+v", b, r.Decision)
		}
	}
	reply := discover(mac(10))
	reply.OpCode = dhcpv4.OpcodeBootReply
	if r := s.Handle(ctx, reply); r.Decision.Action != ActDrop {
		t.Fatalf("BOOTREPLY: %+v", r.Decision)
	}
}

// TestDropLogRateLimited: a client sending a stream of packets the server
// drops gets one log line per LogEvery, the next one saying how many were
// left out; other MACs are logged on their own.
func TestDropLogRateLimited(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	s, logs := newTestServer(t, &fakeBackend{}, func(c *Config) { c.Now = func() time.Time { return now } })
	mac := net.HardwareAddr{0x52, 0x54, 0, 0x66, 0, 1}
	foreign := discover(mac, dhcpv4.WithServerIP(net.IPv4(10, 9, 9, 9)), dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(10, 9, 9, 9))))
	ctx := context.Background()
	for range 1000 {
		if r := s.Handle(ctx, foreign); r.Decision.Action != ActDrop {
			t.Fatalf("decision %+v, want drop", r.Decision)
		}
	}
	if n := strings.Count(logs.String(), "dhcp drop"); n != 1 {
		t.Fatalf("%d drop lines for 1000 drops of one MAC within a minute, want 1:\n%s", n, logs)
	}
	other := discover(net.HardwareAddr{0x52, 0x54, 0, 0x66, 0, 2}, dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(10, 9, 9, 9))))
	s.Handle(ctx, other)
	now = now.Add(time.Minute)
	s.Handle(ctx, foreign)
	out := logs.String()
	if n := strings.Count(out, "dhcp drop"); n != 3 || !strings.Contains(out, "suppressed=999") {
		t.Fatalf("want a line for the other MAC and one saying 999 were suppressed:\n%s", out)
	}
}
