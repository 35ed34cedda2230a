package nodeagent

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"ironbark/internal/nodeapi"
)

// MetadataAddr is where instances find the EC2 instance metadata service.
var MetadataAddr = netip.MustParseAddr("169.254.169.254")

// instanceLeaseTime is the DHCP lease the node gives an instance: the
// address is the instance's for its whole life, so renewals only confirm it.
const instanceLeaseTime = time.Hour

// instanceSpecs is what the node's network services answer from: the
// instances the controller wants on this node, not terminated.
func (a *Agent) instanceSpecs() []nodeapi.InstanceSpec {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]nodeapi.InstanceSpec, 0, len(a.desired))
	for _, s := range a.desired {
		if s.Desired != nodeapi.StateTerminated && s.PrivateIP != "" {
			out = append(out, s)
		}
	}
	return out
}

// serveInstanceNetwork runs DHCP and the metadata service for the
// instances on the cluster bridge until ctx ends. They answer from the
// bridge's own IPv4 address, so they wait for the bridge to have one.
func (a *Agent) serveInstanceNetwork(ctx context.Context) {
	if a.cfg.Bridge == "" || a.cfg.NoInstanceServices {
		return
	}
	log := a.log.With("bridge", a.cfg.Bridge)
	var host netip.Prefix
	for waited := false; ; waited = true {
		var err error
		host, err = bridgeAddr(a.cfg.Bridge)
		if err == nil {
			break
		}
		if !waited {
			log.Info("instance DHCP and metadata wait for the bridge's IPv4 address", "err", err)
		}
		sleep(ctx, 5*time.Second)
		if ctx.Err() != nil {
			return
		}
	}
	// The instances of MANAGED mode's VLANs are on their VLAN's bridge.
	ns := &netServices{log: log, bridge: a.cfg.Bridge, host: host,
		specs: func() []nodeapi.InstanceSpec { return specsOnVLAN(a.instanceSpecs(), 0) }}
	if err := ns.run(ctx); err != nil && ctx.Err() == nil {
		log.Error("instance network services stopped", "err", err)
	}
}

// bridgeAddr is the bridge's first IPv4 address other than the metadata
// one, with its prefix length.
func bridgeAddr(bridge string) (netip.Prefix, error) {
	link, err := netlink.LinkByName(bridge)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("bridge %s: %w", bridge, err)
	}
	addrs, err := netlink.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("bridge %s addresses: %w", bridge, err)
	}
	for _, ad := range addrs {
		ip, ok := netip.AddrFromSlice(ad.IP.To4())
		ones, _ := ad.Mask.Size()
		if ok && ip != MetadataAddr && !ip.IsLinkLocalUnicast() {
			return netip.PrefixFrom(ip, ones), nil
		}
	}
	return netip.Prefix{}, fmt.Errorf("bridge %s has no IPv4 address", bridge)
}

// netServices are the DHCP server and the metadata service of one bridge.
type netServices struct {
	log    *slog.Logger
	bridge string
	host   netip.Prefix // the bridge's address: server identifier, router
	specs  func() []nodeapi.InstanceSpec
	// sharedGateway: host is the subnet's gateway that every node of the
	// segment holds alike (a VLAN bridge's), kept node-local like the
	// metadata address, not the node's own address on the bridge.
	sharedGateway bool

	filterMu sync.Mutex
	filter   *guestFilter
}

// syncFilter brings the bridge filter up to date with the instances.
func (ns *netServices) syncFilter() {
	ns.filterMu.Lock()
	defer ns.filterMu.Unlock()
	specs := ns.specs()
	own := ns.host
	if ns.sharedGateway {
		own = netip.Prefix{}
	}
	if err := ns.filter.sync(specs, sharedAddrs(specs, own)); err != nil {
		ns.log.Error("instance bridge filter", "err", err)
	}
}

func (ns *netServices) run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	removeAddr, err := addMetadataAddr(ns.bridge)
	if err != nil {
		return err
	}
	defer removeAddr()
	// The metadata service answers by source address: the filter makes
	// sure an instance's packets carry its own. Without it, no service.
	nsfd, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("network namespace: %w", err)
	}
	defer unix.Close(nsfd)
	if ns.filter, err = newGuestFilter(ns.bridge, nsfd); err != nil {
		return fmt.Errorf("instance bridge filter (MAC and address of each instance's port): %w", err)
	}
	defer func() {
		ns.filterMu.Lock()
		defer ns.filterMu.Unlock()
		if err := ns.filter.close(); err != nil {
			ns.log.Warn("remove instance bridge filter", "err", err)
		}
	}()
	ns.syncFilter()
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				ns.syncFilter()
			}
		}
	}()

	srv, err := server4.NewServer(ns.bridge, &net.UDPAddr{Port: dhcpv4.ServerPort}, ns.handleDHCP)
	if err != nil {
		return fmt.Errorf("instance DHCP on %s: %w", ns.bridge, err)
	}
	dhcpDone := make(chan error, 1)
	go func() { dhcpDone <- srv.Serve() }()
	defer func() { srv.Close(); <-dhcpDone }()

	lc := net.ListenConfig{Control: bindToDevice(ns.bridge)}
	ln, err := lc.Listen(ctx, "tcp4", net.JoinHostPort(MetadataAddr.String(), "80"))
	if err != nil {
		return fmt.Errorf("instance metadata on %s: %w", ns.bridge, err)
	}
	md, err := newMetadataHandler(ns.specs, ns.log)
	if err != nil {
		ln.Close()
		return err
	}
	hs := &http.Server{Handler: md, ReadHeaderTimeout: 10 * time.Second}
	httpDone := make(chan error, 1)
	go func() { httpDone <- hs.Serve(ln) }()
	ns.log.Info("instance DHCP and metadata serving", "server", ns.host, "metadata", ln.Addr())
	select {
	case <-ctx.Done():
		hs.Close()
		<-httpDone
		return nil
	case err := <-dhcpDone:
		dhcpDone <- err
		hs.Close()
		<-httpDone
		return fmt.Errorf("instance DHCP: %w", err)
	case err := <-httpDone:
		httpDone <- err
		return fmt.Errorf("instance metadata: %w", err)
	}
}

// addMetadataAddr puts 169.254.169.254/32 on the bridge (instances reach
// it through their default route, the bridge) and returns what removes it
// again; an address already there (a killed agent's) is kept and removed.
func addMetadataAddr(bridge string) (func(), error) {
	link, err := netlink.LinkByName(bridge)
	if err != nil {
		return nil, fmt.Errorf("bridge %s: %w", bridge, err)
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: MetadataAddr.AsSlice(), Mask: net.CIDRMask(32, 32)}}
	if err := netlink.AddrAdd(link, addr); err != nil && !errors.Is(err, unix.EEXIST) {
		return nil, fmt.Errorf("add %s to %s: %w", MetadataAddr, bridge, err)
	}
	return func() { _ = netlink.AddrDel(link, addr) }, nil
}

// bindToDevice binds a socket to one interface, so that agents on other
// bridges of the same host can each serve 169.254.169.254:80.
func bindToDevice(dev string) func(network, address string, c syscall.RawConn) error {
	return func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptString(int(fd), unix.SOL_SOCKET, unix.SO_BINDTODEVICE, dev)
		}); err != nil {
			return err
		}
		return serr
	}
}

func (ns *netServices) handleDHCP(conn net.PacketConn, peer net.Addr, req *dhcpv4.DHCPv4) {
	// An instance asking for its address gets its port's rules first.
	ns.syncFilter()
	specs := ns.specs()
	host, serve := dhcpHost(req.ClientHWAddr.String(), specs, ns.host)
	if !serve {
		return // SYSTEM mode: the cluster network's DHCP answers
	}
	resp := dhcpAnswer(req, host, specs)
	if resp == nil {
		for _, s := range specs {
			if strings.EqualFold(s.MAC, req.ClientHWAddr.String()) {
				ns.log.Warn("instance DHCP: not answering an instance whose address is outside the bridge's subnet",
					"instance", s.InstanceID, "ip", s.PrivateIP, "subnet", ns.host.Masked(), "type", req.MessageType())
			}
		}
		return
	}
	dest := &net.UDPAddr{IP: net.IPv4bcast, Port: dhcpv4.ClientPort}
	if !req.ClientIPAddr.IsUnspecified() && req.ClientIPAddr.To4() != nil {
		dest.IP = req.ClientIPAddr // renewing: the client has its address
	}
	if _, err := conn.WriteTo(resp.ToBytes(), dest); err != nil {
		ns.log.Warn("instance DHCP send", "mac", req.ClientHWAddr.String(), "err", err)
		return
	}
	ns.log.Debug("instance DHCP", "mac", req.ClientHWAddr.String(), "type", resp.MessageType(), "ip", resp.YourIPAddr)
}

// dhcpAnswer is the reply to a DHCP request from the bridge whose address
// is host, given the instances of the node: nil for anything but an
// instance's DISCOVER or REQUEST, an OFFER or ACK of its private address,
// or a NAK when it asks for another.
func dhcpAnswer(req *dhcpv4.DHCPv4, host netip.Prefix, specs []nodeapi.InstanceSpec) *dhcpv4.DHCPv4 {
	if req.OpCode != dhcpv4.OpcodeBootRequest || !req.GatewayIPAddr.IsUnspecified() {
		return nil
	}
	var ip netip.Addr
	for _, s := range specs {
		if strings.EqualFold(s.MAC, req.ClientHWAddr.String()) {
			ip, _ = netip.ParseAddr(s.PrivateIP)
		}
	}
	if !ip.Is4() || !host.Contains(ip) {
		return nil // not ours, or an address this bridge cannot serve
	}
	serverID := net.IP(host.Addr().AsSlice())
	var mt dhcpv4.MessageType
	switch req.MessageType() {
	case dhcpv4.MessageTypeDiscover:
		mt = dhcpv4.MessageTypeOffer
	case dhcpv4.MessageTypeRequest:
		if sid := req.ServerIdentifier(); sid != nil && !sid.Equal(serverID) {
			return nil // the client took another server's offer
		}
		want := req.RequestedIPAddress()
		if want == nil || want.IsUnspecified() {
			want = req.ClientIPAddr
		}
		mt = dhcpv4.MessageTypeAck
		if !want.Equal(net.IP(ip.AsSlice())) {
			mt = dhcpv4.MessageTypeNak
		}
	default:
		return nil
	}
	mods := []dhcpv4.Modifier{dhcpv4.WithMessageType(mt), dhcpv4.WithServerIP(serverID),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(serverID))}
	if mt != dhcpv4.MessageTypeNak {
		mods = append(mods, dhcpv4.WithYourIP(net.IP(ip.AsSlice())),
			dhcpv4.WithNetmask(net.CIDRMask(host.Bits(), 32)),
			dhcpv4.WithRouter(serverID),
			dhcpv4.WithLeaseTime(uint32(instanceLeaseTime/time.Second)),
			dhcpv4.WithOption(dhcpv4.OptHostName(instanceHostname(ip.String()))))
	}
	resp, err := dhcpv4.NewReplyFromRequest(req, mods...)
	if err != nil {
		return nil
	}
	return resp
}

// instanceHostname is an instance's short host name, EC2's ip-a-b-c-d.
func instanceHostname(ip string) string { return "ip-" + strings.ReplaceAll(ip, ".", "-") }

// metadataHandler is the EC2 instance metadata service: it tells an
// instance, known by its source address, about itself. IMDSv2 tokens
// (PUT /latest/api/token) are issued and checked; requests without one
// are answered too (IMDSv1).
type metadataHandler struct {
	specs func() []nodeapi.InstanceSpec
	key   []byte // signs tokens
	log   *slog.Logger
	now   func() time.Time
}

func newMetadataHandler(specs func() []nodeapi.InstanceSpec, log *slog.Logger) (*metadataHandler, error) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("metadata token key: %w", err)
	}
	return &metadataHandler{specs: specs, key: key, log: log, now: time.Now}, nil
}

const (
	tokenHeader    = "X-aws-ec2-metadata-token"
	tokenTTLHeader = "X-aws-ec2-metadata-token-ttl-seconds"
)

func (m *metadataHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	src, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		http.Error(w, "Forbidden", http.StatusForbidden)
		return
	}
	ip := src.Addr().Unmap()
	var spec *nodeapi.InstanceSpec
	for _, s := range m.specs() {
		if s.PrivateIP == ip.String() {
			spec = &s
			break
		}
	}
	if spec == nil {
		http.Error(w, "Forbidden", http.StatusForbidden)
		return
	}
	path := r.URL.Path
	if r.Method == http.MethodPut {
		if path != "/latest/api/token" {
			http.Error(w, "Not Found", http.StatusNotFound)
			return
		}
		ttl, err := strconv.Atoi(r.Header.Get(tokenTTLHeader))
		if err != nil || ttl < 1 || ttl > 21600 {
			http.Error(w, "Bad Request", http.StatusBadRequest)
			return
		}
		w.Header().Set(tokenTTLHeader, strconv.Itoa(ttl))
		_, _ = w.Write([]byte(m.token(ip, m.now().Add(time.Duration(ttl)*time.Second))))
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD, PUT")
		http.Error(w, "Method Not Allowed", http.StatusMethodNotAllowed)
		return
	}
	if tok := r.Header.Get(tokenHeader); tok != "" && !m.validToken(ip, tok) {
		http.Error(w, "Unauthorized", http.StatusUnauthorized)
		return
	}
	body, ok := metadataAt(spec, path)
	if !ok {
		http.Error(w, "Not Found", http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	_, _ = w.Write(body)
}

// token is an IMDSv2 session token for ip until exp: the expiry and its
// MAC, so the service keeps no state.
func (m *metadataHandler) token(ip netip.Addr, exp time.Time) string {
	b := binary.BigEndian.AppendUint64(nil, uint64(exp.Unix()))
	return base64.RawURLEncoding.EncodeToString(append(b, m.sum(ip, b)...))
}

func (m *metadataHandler) validToken(ip netip.Addr, tok string) bool {
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || len(b) != 8+sha256.Size {
		return false
	}
	if !hmac.Equal(b[8:], m.sum(ip, b[:8])) {
		return false
	}
	return m.now().Unix() < int64(binary.BigEndian.Uint64(b[:8]))
}

func (m *metadataHandler) sum(ip netip.Addr, exp []byte) []byte {
	h := hmac.New(sha256.New, m.key)
	h.Write(ip.AsSlice())
	h.Write(exp)
	return h.Sum(nil)
}

// metadataAt answers one metadata path for an instance: a document, or a
// listing (one name a line, directories with a trailing slash). Any
// version works where "latest" does (cloud-init asks for 2009-04-04).
func metadataAt(s *nodeapi.InstanceSpec, path string) ([]byte, bool) {
	if path == "/" {
		return []byte("latest\n"), true
	}
	version, rest, _ := strings.Cut(strings.TrimPrefix(path, "/"), "/")
	if version != "latest" && !isVersion(version) {
		return nil, false
	}
	switch rest {
	case "":
		return []byte("meta-data/\nuser-data\n"), true
	case "user-data":
		return s.UserData, len(s.UserData) > 0
	}
	rest, ok := strings.CutPrefix(rest, "meta-data")
	if !ok {
		return nil, false
	}
	rest = strings.TrimPrefix(rest, "/")
	host := instanceHostname(s.PrivateIP) + ".ironbark.internal"
	docs := map[string]string{
		"ami-id":           s.Image.ID,
		"ami-launch-index": "0",
		"hostname":         host,
		"instance-id":      s.InstanceID,
		"instance-type":    s.VMType.Name,
		"local-hostname":   host,
		"local-ipv4":       s.PrivateIP,
		"mac":              strings.ToLower(s.MAC),
	}
	if s.Kernel != nil {
		docs["kernel-id"] = s.Kernel.ID
	}
	if s.Ramdisk != nil {
		docs["ramdisk-id"] = s.Ramdisk.ID
	}
	switch rest {
	case "":
		names := []string{"ami-id", "ami-launch-index", "hostname", "instance-id", "instance-type"}
		if s.Kernel != nil {
			names = append(names, "kernel-id")
		}
		names = append(names, "local-hostname", "local-ipv4", "mac")
		if s.PublicKey != "" {
			names = append(names, "public-keys/")
		}
		if s.Ramdisk != nil {
			names = append(names, "ramdisk-id")
		}
		return []byte(strings.Join(names, "\n") + "\n"), true
	case "public-keys", "public-keys/":
		if s.PublicKey == "" {
			return nil, false
		}
		name := s.KeyName
		if name == "" {
			name = "key"
		}
		return []byte("0=" + name + "\n"), true
	case "public-keys/0", "public-keys/0/":
		return []byte("openssh-key\n"), s.PublicKey != ""
	case "public-keys/0/openssh-key":
		return []byte(strings.TrimRight(s.PublicKey, "\n") + "\n"), s.PublicKey != ""
	}
	v, ok := docs[rest]
	return []byte(v), ok && v != ""
}

// isVersion reports whether s looks like a metadata version, 2009-04-04.
func isVersion(s string) bool {
	_, err := time.Parse("2006-01-02", s)
	return err == nil
}
