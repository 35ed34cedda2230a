package dhcp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

// Action is what the server did with a request.
type Action string

const (
	ActOffer   Action = "offer"
	ActAck     Action = "ack"
	ActNak     Action = "nak"
	ActInform  Action = "inform"  // answered DHCPINFORM
	ActRelease Action = "release" // lease released, no reply
	ActDecline Action = "decline" // address marked in use, no reply
	ActIgnore  Action = "ignore"  // Backend said ErrIgnore, no reply
	ActDrop    Action = "drop"    // malformed, foreign or not for us, no reply
	ActError   Action = "error"   // backend or store failed, no reply (client retries)
)

// Decision describes how one request was handled, for logs, tests and
// OnDecision.
type Decision struct {
	Action   Action
	Type     string // request message type, "" if unparsable
	MAC      string
	IP       netip.Addr // offered, acknowledged, released or declined address
	Hostname string
	BootFile string
	Reason   string // why dropped, NAKed or failed
}

// Reply is the outcome of handling one packet: the packet to send (nil
// for none), where to send it, and the decision.
type Reply struct {
	Packet   *dhcpv4.DHCPv4
	Dest     *net.UDPAddr
	Decision Decision
}

// HandlePacket parses a raw request and handles it. Malformed input gives
// an ActDrop decision, never a panic.
func (s *Server) HandlePacket(ctx context.Context, b []byte) (r Reply) {
	defer func() {
		if p := recover(); p != nil { // belt and braces: a parser bug must not stop the server
			r = Reply{Decision: Decision{Action: ActDrop, Reason: fmt.Sprintf("panic: %v", p)}}
			s.log.Error("dhcp handler panic", "err", p, "len", len(b))
		}
		s.report(r.Decision)
	}()
	req, err := dhcpv4.FromBytes(b)
	if err != nil {
		return Reply{Decision: Decision{Action: ActDrop, Reason: "malformed: " + err.Error()}}
	}
	return s.handle(ctx, req)
}

// Handle answers one parsed request. It does no network I/O: the caller
// sends Reply.Packet to Reply.Dest.
func (s *Server) Handle(ctx context.Context, req *dhcpv4.DHCPv4) Reply {
	r := s.handle(ctx, req)
	s.report(r.Decision)
	return r
}

func (s *Server) report(d Decision) {
	switch d.Action {
	case ActDrop:
		if ok, n := s.noisy.allow(d.MAC); ok {
			s.log.Warn("dhcp drop", "mac", d.MAC, "type", d.Type, "reason", d.Reason, "suppressed", n)
		}
	case ActError:
		if ok, n := s.noisy.allow(d.MAC); ok {
			s.log.Error("dhcp error", "mac", d.MAC, "type", d.Type, "reason", d.Reason, "suppressed", n)
		}
	case ActIgnore:
		if s.ignored.first(d.MAC) {
			s.log.Info("dhcp ignoring unknown client (logged once per MAC)", "mac", d.MAC, "type", d.Type)
		}
	default:
		// Asked first: the arguments alone cost a dozen allocations per
		// packet, at Debug that is off in production.
		if s.log.Enabled(context.Background(), slog.LevelDebug) {
			s.log.Debug("dhcp", "action", d.Action, "mac", d.MAC, "type", d.Type, "ip", d.IP,
				"host", d.Hostname, "boot", d.BootFile, "reason", d.Reason)
		}
	}
	if s.cfg.OnDecision != nil {
		s.cfg.OnDecision(d)
	}
}

func (s *Server) handle(ctx context.Context, req *dhcpv4.DHCPv4) Reply {
	d := Decision{Type: req.MessageType().String()}
	drop := func(why string) Reply { d.Action, d.Reason = ActDrop, why; return Reply{Decision: d} }
	if req.OpCode != dhcpv4.OpcodeBootRequest {
		return drop("not a BOOTREQUEST")
	}
	if len(req.ClientHWAddr) != 6 {
		return drop(fmt.Sprintf("hardware address length %d", len(req.ClientHWAddr)))
	}
	d.MAC = req.ClientHWAddr.String()
	if isZeroMAC(req.ClientHWAddr) || req.ClientHWAddr[0]&1 == 1 {
		return drop("invalid client hardware address")
	}
	if gw, ok := addr4(req.GatewayIPAddr); ok && !gw.IsUnspecified() && !s.cfg.Subnet.Contains(gw) {
		return drop("relayed from foreign subnet " + gw.String())
	}
	if sid, ok := addr4(req.ServerIdentifier()); ok && sid != s.cfg.ServerIP {
		// The client chose (or talks to) another server: release our offer.
		if req.MessageType() == dhcpv4.MessageTypeRequest {
			s.leases.Withdraw(req.ClientHWAddr)
		}
		return drop("for server " + sid.String())
	}
	ci := clientInfo(req)
	switch req.MessageType() {
	case dhcpv4.MessageTypeDiscover:
		return s.discover(ctx, req, ci, d)
	case dhcpv4.MessageTypeRequest:
		return s.request(ctx, req, ci, d)
	case dhcpv4.MessageTypeRelease:
		ip, ok := addr4(req.ClientIPAddr)
		if !ok || ip.IsUnspecified() {
			return drop("release without ciaddr")
		}
		d.Action, d.IP = ActRelease, ip
		if err := s.leases.Release(ctx, req.ClientHWAddr, ip); err != nil {
			d.Action, d.Reason = ActError, err.Error()
		}
		return Reply{Decision: d}
	case dhcpv4.MessageTypeDecline:
		ip, ok := addr4(req.RequestedIPAddress())
		if !ok || ip.IsUnspecified() {
			return drop("decline without requested address")
		}
		d.Action, d.IP = ActDecline, ip
		if err := s.leases.Decline(ctx, req.ClientHWAddr, ip); err != nil {
			d.Action, d.Reason = ActError, err.Error()
		}
		return Reply{Decision: d}
	case dhcpv4.MessageTypeInform:
		return s.inform(req, d)
	default:
		return drop("unhandled message type")
	}
}

func isZeroMAC(m net.HardwareAddr) bool {
	for _, b := range m {
		if b != 0 {
			return false
		}
	}
	return true
}

// addr4 converts a net.IP from the packet to netip, reporting whether it
// is a valid IPv4 address.
func addr4(ip net.IP) (netip.Addr, bool) {
	ip4 := ip.To4()
	if ip4 == nil {
		return netip.Addr{}, false
	}
	return netip.AddrFrom4([4]byte(ip4)), true
}

// clientInfo extracts what the Backend needs from a request.
func clientInfo(req *dhcpv4.DHCPv4) ClientInfo {
	ci := ClientInfo{
		MAC:         req.ClientHWAddr,
		MessageType: req.MessageType().String(),
		VendorClass: req.ClassIdentifier(),
		Hostname:    req.HostName(),
	}
	if a := req.ClientArch(); len(a) > 0 {
		ci.Arch, ci.HasArch = a[0], true
	}
	ci.PXE = ci.HasArch || strings.HasPrefix(ci.VendorClass, "PXEClient")
	for _, uc := range req.UserClass() {
		if uc == "iPXE" {
			ci.IsIPXE = true
		}
	}
	if req.Options.Has(optIPXEEncap) {
		ci.IsIPXE = true
	}
	if ip, ok := addr4(req.RequestedIPAddress()); ok && !ip.IsUnspecified() {
		ci.RequestedIP = ip
	} else if ip, ok := addr4(req.ClientIPAddr); ok && !ip.IsUnspecified() {
		ci.RequestedIP = ip
	}
	return ci
}

// iPXE's encapsulated options (option 175) and the one we set: 176,
// "no-pxedhcp", which stops iPXE waiting for a ProxyDHCP offer.
var optIPXEEncap = dhcpv4.GenericOptionCode(175)

const ipxeNoPXEDHCP = 176

// assign asks the backend and fills the decision; ok false means no reply.
func (s *Server) assign(ctx context.Context, ci ClientInfo, d *Decision) (*Binding, bool) {
	b, err := s.backend.Assign(ctx, ci)
	switch {
	case errors.Is(err, ErrIgnore):
		d.Action = ActIgnore
		return nil, false
	case err != nil:
		d.Action, d.Reason = ActError, "backend: "+err.Error()
		return nil, false
	case b == nil:
		d.Action, d.Reason = ActError, "backend returned no binding"
		return nil, false
	}
	if b.IP.IsValid() && (!b.IP.Is4() || !s.cfg.Subnet.Contains(b.IP)) {
		d.Action, d.Reason = ActError, fmt.Sprintf("static address %s outside subnet %s", b.IP, s.cfg.Subnet)
		return nil, false
	}
	s.ignored.forget(d.MAC)
	return b, true
}

func (s *Server) discover(ctx context.Context, req *dhcpv4.DHCPv4, ci ClientInfo, d Decision) Reply {
	b, ok := s.assign(ctx, ci, &d)
	if !ok {
		return Reply{Decision: d}
	}
	l, err := s.leases.Offer(ctx, OfferRequest{MAC: ci.MAC, Hostname: b.Hostname, Static: b.IP, Requested: ci.RequestedIP})
	if err != nil {
		d.Action, d.Reason = ActError, err.Error()
		return Reply{Decision: d}
	}
	d.Action, d.IP = ActOffer, l.IP
	return s.reply(req, ci, b, dhcpv4.MessageTypeOffer, l.IP, d)
}

func (s *Server) request(ctx context.Context, req *dhcpv4.DHCPv4, ci ClientInfo, d Decision) Reply {
	ip := ci.RequestedIP
	if !ip.IsValid() {
		d.Action, d.Reason = ActDrop, "request without address"
		return Reply{Decision: d}
	}
	b, ok := s.assign(ctx, ci, &d)
	if !ok {
		return Reply{Decision: d}
	}
	if !s.cfg.Subnet.Contains(ip) || (b.IP.IsValid() && b.IP != ip) {
		return s.nak(req, d, ip, "wrong address for this client or network")
	}
	lt := s.leaseTime(b)
	l, err := s.leases.Ack(ctx, AckRequest{MAC: ci.MAC, IP: ip, Hostname: b.Hostname, Static: b.IP.IsValid(), LeaseTime: lt})
	if errors.Is(err, ErrUnavailable) {
		return s.nak(req, d, ip, err.Error())
	}
	if err != nil {
		d.Action, d.Reason = ActError, err.Error()
		return Reply{Decision: d}
	}
	d.Action, d.IP = ActAck, l.IP
	return s.reply(req, ci, b, dhcpv4.MessageTypeAck, l.IP, d)
}

func (s *Server) leaseTime(b *Binding) time.Duration {
	if b != nil && b.LeaseTime > 0 {
		return b.LeaseTime
	}
	return s.cfg.LeaseTime
}

func (s *Server) nak(req *dhcpv4.DHCPv4, d Decision, ip netip.Addr, why string) Reply {
	d.Action, d.IP, d.Reason = ActNak, ip, why
	resp, err := newReply(req,
		dhcpv4.WithMessageType(dhcpv4.MessageTypeNak),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(s.cfg.ServerIP.AsSlice())),
		dhcpv4.WithOption(dhcpv4.OptMessage(why)))
	if err != nil {
		d.Action, d.Reason = ActError, "build nak: "+err.Error()
		return Reply{Decision: d}
	}
	// RFC 2131 4.3.2: a NAK is broadcast unless it goes through a relay.
	dest := &net.UDPAddr{IP: net.IPv4bcast, Port: dhcpv4.ClientPort}
	if gw, ok := addr4(req.GatewayIPAddr); ok && !gw.IsUnspecified() {
		resp.SetBroadcast()
		dest = &net.UDPAddr{IP: gw.AsSlice(), Port: dhcpv4.ServerPort}
	}
	return Reply{Packet: resp, Dest: dest, Decision: d}
}

func (s *Server) inform(req *dhcpv4.DHCPv4, d Decision) Reply {
	ci, ok := addr4(req.ClientIPAddr)
	if !ok || ci.IsUnspecified() || !s.cfg.Subnet.Contains(ci) {
		d.Action, d.Reason = ActDrop, "inform without a ciaddr in our subnet"
		return Reply{Decision: d}
	}
	resp, err := newReply(req, dhcpv4.WithMessageType(dhcpv4.MessageTypeAck))
	if err != nil {
		d.Action, d.Reason = ActError, "build inform reply: "+err.Error()
		return Reply{Decision: d}
	}
	s.networkOptions(resp)
	d.Action, d.IP = ActInform, ci
	return Reply{Packet: resp, Dest: s.dest(req, resp), Decision: d}
}

// networkOptions adds what every answer carries: server id, mask, router,
// DNS, domain.
func (s *Server) networkOptions(resp *dhcpv4.DHCPv4) {
	resp.UpdateOption(dhcpv4.OptServerIdentifier(s.cfg.ServerIP.AsSlice()))
	resp.UpdateOption(dhcpv4.OptSubnetMask(net.CIDRMask(s.cfg.Subnet.Bits(), 32)))
	if s.cfg.Router.IsValid() {
		resp.UpdateOption(dhcpv4.OptRouter(s.cfg.Router.AsSlice()))
	}
	if len(s.cfg.DNS) > 0 {
		ips := make([]net.IP, len(s.cfg.DNS))
		for i, a := range s.cfg.DNS {
			ips[i] = a.AsSlice()
		}
		resp.UpdateOption(dhcpv4.OptDNS(ips...))
	}
	if s.cfg.DomainName != "" {
		resp.UpdateOption(dhcpv4.OptDomainName(s.cfg.DomainName))
	}
}

// bootFile picks the boot file for a client: the Backend's, else by
// architecture for PXE firmware; iPXE without one and non-PXE clients get
// none.
func (s *Server) bootFile(ci ClientInfo, b *Binding) string {
	switch {
	case !ci.PXE && !ci.IsIPXE:
		return ""
	case b.BootFile != "":
		return b.BootFile
	case ci.IsIPXE:
		return ""
	case ci.UEFI():
		return s.cfg.UEFIBootFile
	case !ci.HasArch || ci.Arch == 0:
		return s.cfg.BIOSBootFile
	default:
		return "" // an architecture we have no loader for (ARM, IA32 EFI)
	}
}

func (s *Server) reply(req *dhcpv4.DHCPv4, ci ClientInfo, b *Binding, mt dhcpv4.MessageType, ip netip.Addr, d Decision) Reply {
	lt := s.leaseTime(b)
	resp, err := newReply(req,
		dhcpv4.WithMessageType(mt),
		dhcpv4.WithYourIP(ip.AsSlice()),
		dhcpv4.WithOption(dhcpv4.OptIPAddressLeaseTime(lt)),
		dhcpv4.WithOption(dhcpv4.OptRenewTimeValue(lt/2)),
		dhcpv4.WithOption(dhcpv4.OptRebindingTimeValue(lt*7/8)))
	if err != nil {
		d.Action, d.Reason = ActError, "build reply: "+err.Error()
		return Reply{Decision: d}
	}
	s.networkOptions(resp)
	if b.Hostname != "" {
		resp.UpdateOption(dhcpv4.OptHostName(b.Hostname))
		d.Hostname = b.Hostname
	}
	next := s.cfg.ServerIP
	if b.NextServer.Is4() {
		next = b.NextServer
	}
	if bf := s.bootFile(ci, b); bf != "" {
		resp.ServerIPAddr = next.AsSlice()
		resp.BootFileName = bf
		resp.UpdateOption(dhcpv4.OptBootFileName(bf))
		d.BootFile = bf
		if ci.PXE && !ci.IsIPXE {
			// PXE firmware treats only offers naming "PXEClient" as PXE
			// offers; option 43 sub-option 6 (discovery control) = 8 says
			// "boot the file named here, no boot server discovery".
			resp.UpdateOption(dhcpv4.OptClassIdentifier("PXEClient"))
			resp.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionVendorSpecificInformation, []byte{6, 1, 8, 255}))
		}
	}
	if ci.IsIPXE {
		// 175 { 176 = 1 }: iPXE must not wait for ProxyDHCP (LAB.md).
		resp.UpdateOption(dhcpv4.OptGeneric(optIPXEEncap, []byte{ipxeNoPXEDHCP, 1, 1}))
	}
	return Reply{Packet: resp, Dest: s.dest(req, resp), Decision: d}
}

// dest applies RFC 2131 4.1: to the relay if relayed; to ciaddr if the
// client has an address; otherwise broadcast (the client cannot answer
// ARP yet; broadcasting works whether or not it set the broadcast flag).
func (s *Server) dest(req, resp *dhcpv4.DHCPv4) *net.UDPAddr {
	if gw, ok := addr4(req.GatewayIPAddr); ok && !gw.IsUnspecified() {
		return &net.UDPAddr{IP: gw.AsSlice(), Port: dhcpv4.ServerPort}
	}
	if ci, ok := addr4(req.ClientIPAddr); ok && !ci.IsUnspecified() {
		return &net.UDPAddr{IP: ci.AsSlice(), Port: dhcpv4.ClientPort}
	}
	return &net.UDPAddr{IP: net.IPv4bcast, Port: dhcpv4.ClientPort}
}

// newReply is dhcpv4.NewReplyFromRequest without the random transaction
// ID that dhcpv4.New draws (a getrandom call per reply, overwritten at
// once by the request's): the same fields and copied options.
func newReply(req *dhcpv4.DHCPv4, mods ...dhcpv4.Modifier) (*dhcpv4.DHCPv4, error) {
	d := &dhcpv4.DHCPv4{
		OpCode:        dhcpv4.OpcodeBootRequest,
		HWType:        iana.HWTypeEthernet,
		ClientHWAddr:  make(net.HardwareAddr, 6),
		ClientIPAddr:  net.IPv4zero,
		YourIPAddr:    net.IPv4zero,
		ServerIPAddr:  net.IPv4zero,
		GatewayIPAddr: net.IPv4zero,
		Options:       make(dhcpv4.Options),
	}
	for _, m := range append([]dhcpv4.Modifier{
		dhcpv4.WithReply(req),
		dhcpv4.WithGatewayIP(req.GatewayIPAddr),
		dhcpv4.WithOptionCopied(req, dhcpv4.OptionRelayAgentInformation),
		// RFC 6842: the client identifier is echoed.
		dhcpv4.WithOptionCopied(req, dhcpv4.OptionClientIdentifier),
	}, mods...) {
		m(d)
	}
	return d, nil
}
