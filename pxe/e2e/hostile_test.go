package e2e

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"

	"ironbark/internal/lab"
	"ironbark/internal/nodeapi"
	"ironbark/internal/pki"
)

// TestHostileProvisioningNetwork is issue 9's provisioning-network test on
// the lab bridge: a client floods discovery with 1,000 random MACs (the
// session admits its --max, each with an address, and reports the rest;
// the pool stays usable for a real node), then acts as a rogue: it asks for
// a discovered host's boot script and install profile (refused: not the
// host's address), spoofs the host's address to get the token once, and
// fails to enroll with it as anything but that host; the host's next
// install attempt revokes it.
func TestHostileProvisioningNetwork(t *testing.T) {
	lab.Require(t, "ip", "go")
	work := t.TempDir()
	data := filepath.Join(work, "data")
	ironbark, _ := buildBinaries(t, work)
	img := filepath.Join(work, "compute.img")
	if err := os.WriteFile(img, []byte(strings.Repeat("appliance image\n", 4096)), 0o644); err != nil {
		t.Fatal(err)
	}
	ironbarkCmd(t, ironbark, "cluster", "add", "c1", "--data-dir", data)
	ironbarkCmd(t, ironbark, "pxe", "image", "compute", img, "--data-dir", data)

	tftp := t.TempDir() // no VM boots here: a stand-in boot file will do
	if err := os.WriteFile(filepath.Join(tftp, "undionly.kpxe"), []byte("not iPXE"), 0o644); err != nil {
		t.Fatal(err)
	}
	n := lab.NewLabNet(t, "")
	addr := n.Addr.Addr().String()
	ctl := startProc(t, "controller", n.NS.Command(context.Background(), ironbark, "controller", "--data-dir", data,
		"--listen", net.JoinHostPort(addr, "8773"), "--node-listen", net.JoinHostPort(addr, "8774")), work)
	ctl.WaitLine(t, "controller started", 60*time.Second)
	pxe := startProc(t, "pxe", n.NS.Command(context.Background(), ironbark, "pxe", "--data-dir", data, "--interface", n.Bridge,
		"--tftp-dir", tftp, "--controller-url", "https://"+net.JoinHostPort(addr, "8774")), work)
	pxe.WaitLine(t, "pxe serving", 30*time.Second)
	const max = 8
	disc := startProc(t, "discover", exec.Command(ironbark, "discover", "--cluster", "c1", "--no-tui", "--max", strconv.Itoa(max),
		"--data-dir", data), work)
	disc.WaitLine(t, "discovering compute appliances", 30*time.Second)

	// The attacker: a machine of its own behind a port of the bridge.
	rogueNS := lab.NewNetNS(t)
	port := n.NS.Link(t, n.Bridge, rogueNS)
	rogueIP := n.Addr.Addr().Next().Next().Next().Next() // .5, outside the pool
	rogueNS.AddAddr(t, port, netip.PrefixFrom(rogueIP, n.Addr.Bits()))
	var conn net.PacketConn
	if err := rogueNS.Do(func() error {
		var err error
		// As a PXE ROM sends: raw frames from 0.0.0.0 to the broadcast MAC.
		conn, err = nclient4.NewRawUDPConn(port, dhcpv4.ClientPort)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	bcast := &net.UDPAddr{IP: net.IPv4bcast, Port: dhcpv4.ServerPort}
	send := func(mac net.HardwareAddr) *dhcpv4.DHCPv4 {
		d, err := dhcpv4.NewDiscovery(mac, dhcpv4.WithBroadcast(true))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := conn.WriteTo(d.ToBytes(), bcast); err != nil {
			t.Fatalf("send DISCOVER: %v", err)
		}
		return d
	}

	// The flood: 1,000 random MACs, resent until the server has seen them
	// all (UDP may drop some under the burst).
	macs := make([]net.HardwareAddr, 1000)
	for i := range macs {
		m := make(net.HardwareAddr, 6)
		_, _ = rand.Read(m)
		m[0] = m[0]&^1 | 2 // unicast, locally administered
		macs[i] = m
	}
	refusedRE := regexp.MustCompile(`(\d+) MAC\(s\) refused \(last: (.*)\)`)
	refused := func() (int, string) {
		lines := disc.Lines()
		for i := len(lines) - 1; i >= 0; i-- {
			if m := refusedRE.FindStringSubmatch(lines[i]); m != nil {
				n, _ := strconv.Atoi(m[1])
				return n, m[2]
			}
		}
		return 0, ""
	}
	// The server answers each MAC (admits or refuses it) before the next
	// batch goes: a burst larger than its socket buffer would only be
	// dropped by the kernel, which tests nothing.
	answered := func() map[string]bool {
		seen := map[string]bool{}
		for _, l := range pxe.Lines() {
			if i := strings.Index(l, " mac="); i >= 0 && (strings.Contains(l, "ignoring unknown client") || strings.Contains(l, "discovered host")) {
				seen[strings.Fields(l[i+5:])[0]] = true
			}
		}
		return seen
	}
	for batch := 0; batch < len(macs); batch += 50 {
		part := macs[batch:min(batch+50, len(macs))]
		deadline := time.Now().Add(2 * time.Minute)
		for {
			seen := answered()
			missing := 0
			for _, m := range part {
				if !seen[m.String()] {
					missing++
					send(m)
				}
			}
			if missing == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("batch at %d: %d MACs never answered", batch, missing)
			}
			time.Sleep(300 * time.Millisecond)
		}
	}
	waitFor(t, "discover to report the refusals", func() bool { k, _ := refused(); return k >= len(macs)-max })
	k, last := refused()
	t.Logf("discover reports %d refusals, last: %s", k, last)
	if !strings.Contains(last, "cap of 8 hosts is reached") {
		t.Fatalf("last refusal %q does not say the cap was reached", last)
	}
	var hosts []struct{ Name, MAC, IP, Boot string }
	if err := json.Unmarshal([]byte(ironbarkCmd(t, ironbark, "host", "list", "--json", "--data-dir", data)), &hosts); err != nil {
		t.Fatal(err)
	}
	if len(hosts) != max {
		t.Fatalf("%d hosts after the flood, want the cap of %d", len(hosts), max)
	}
	for _, h := range hosts {
		if h.IP == "" {
			t.Fatalf("host %s has no address", h.Name)
		}
	}
	// A real node added by hand still gets an address: the pool was not
	// spent on the flood.
	real := net.HardwareAddr{0x52, 0x54, 0x00, 0x1b, 0x09, 0x99}
	ironbarkCmd(t, ironbark, "host", "add", "--mac", real.String(), "--cluster", "c1", "--rack", "9", "--data-dir", data)
	req := send(real)
	offer := waitOffer(t, conn, req.TransactionID, 30*time.Second)
	if !n.Addr.Masked().Contains(netip.AddrFrom4([4]byte(offer.YourIPAddr.To4()))) {
		t.Fatalf("offer to the real node: %v", offer.YourIPAddr)
	}
	t.Logf("the real node was offered %v after the flood", offer.YourIPAddr)

	// The rogue, from its own address, asks for compute-0-0's script and
	// install profile.
	var victim struct{ Name, MAC, IP, Boot string }
	for _, h := range hosts {
		if h.Name == "compute-0-0" {
			victim = h
		}
	}
	rogue := nsClient(rogueNS, rogueIP)
	base := "http://" + net.JoinHostPort(addr, "8080")
	code, script := get(t, rogue, base+"/boot/script/"+victim.MAC)
	m := regexp.MustCompile(`ironbark\.attempt=([0-9a-f]+)`).FindStringSubmatch(script)
	if code != 200 || m == nil {
		t.Fatalf("script of %s: %d\n%s", victim.Name, code, script)
	}
	profile := base + "/install/" + victim.Name + "/profile?attempt=" + m[1]
	if code, body := get(t, rogue, profile); code != http.StatusForbidden {
		t.Fatalf("profile from the rogue's address: %d %s, want 403", code, body)
	}
	// It takes the host's address and gets the token, once.
	victimIP := netip.MustParseAddr(victim.IP)
	rogueNS.AddAddr(t, port, netip.PrefixFrom(victimIP, n.Addr.Bits()))
	spoof := nsClient(rogueNS, victimIP)
	code, body := get(t, spoof, profile)
	if code != 200 {
		t.Fatalf("profile from the host's address: %d %s", code, body)
	}
	var p struct{ Identity nodeapi.Identity }
	if err := json.Unmarshal([]byte(body), &p); err != nil {
		t.Fatal(err)
	}
	tok := p.Identity.EnrollmentToken
	if code, _ := get(t, spoof, profile); code != http.StatusConflict {
		t.Fatalf("second profile of the attempt: %d, want 409", code)
	}
	// Enrolling as anything but the host is refused: another name, its
	// own MAC, and even the host's name and MAC from its own address.
	ifc, err := nodeIface(rogueNS, port)
	if err != nil {
		t.Fatal(err)
	}
	nodeURL := "https://" + net.JoinHostPort(addr, "8774")
	for _, try := range []struct {
		host string
		macs []string
	}{{"rogue-0-0", []string{victim.MAC}}, {victim.Name, []string{ifc}}, {victim.Name, []string{victim.MAC}}} {
		err := enroll(rogueNS, nodeURL, tok, try.host, try.macs)
		var se *nodeapi.StatusError
		if !errors.As(err, &se) || se.Code != 403 {
			t.Fatalf("rogue enrolls as %s %v: %v, want 403", try.host, try.macs, err)
		}
		t.Logf("rogue as %s %v: %v", try.host, try.macs, err)
	}
	// The host boots again: a new attempt, and the stolen token is dead.
	if code, _ := get(t, spoof, base+"/boot/script/"+victim.MAC); code != 200 {
		t.Fatalf("new attempt: %d", code)
	}
	err = enroll(rogueNS, nodeURL, tok, victim.Name, []string{victim.MAC})
	var se *nodeapi.StatusError
	if !errors.As(err, &se) || se.Code != 403 {
		t.Fatalf("token of a replaced attempt: %v, want 403", err)
	}
	if out := ironbarkCmd(t, ironbark, "node", "list", "--json", "--data-dir", data); strings.TrimSpace(out) != "[]" {
		t.Fatalf("nodes enrolled by the rogue:\n%s", out)
	}
	if err := disc.Interrupt(t, 10*time.Second); err != nil {
		t.Fatalf("discover: %v", err)
	}
	// The real node was added by hand: it is not the session's discovery.
	disc.WaitLine(t, fmt.Sprintf("discovery ended: %d node(s) discovered, ", max), time.Second)
	t.Logf("discover output:\n%s", strings.Join(disc.Lines(), "\n"))
	pxe.WaitLine(t, "profile refused", time.Second)
}

// nsClient is an HTTP client whose connections start in ns from src.
func nsClient(ns *lab.NetNS, src netip.Addr) *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, address string) (net.Conn, error) {
			var c net.Conn
			err := ns.Do(func() error {
				var err error
				d := net.Dialer{LocalAddr: &net.TCPAddr{IP: src.AsSlice()}}
				c, err = d.DialContext(ctx, network, address)
				return err
			})
			return c, err
		}}}
}

func get(t *testing.T, c *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// enroll tries an enrollment from inside ns.
func enroll(ns *lab.NetNS, url, tok, host string, macs []string) error {
	_, fp, err := nodeapi.ParseToken(tok)
	if err != nil {
		return err
	}
	key, _ := pki.NewKey()
	csr, _ := pki.CSR(key, host)
	tc := pki.PinnedTLS(fp)
	c := nodeapi.NewClient(url, tc)
	defer c.Close()
	// The client dials from the namespace.
	c.HTTP().Transport.(*http.Transport).DialContext = func(ctx context.Context, network, address string) (net.Conn, error) {
		var conn net.Conn
		err := ns.Do(func() error {
			var err error
			conn, err = (&net.Dialer{}).DialContext(ctx, network, address)
			return err
		})
		return conn, err
	}
	_, err = c.Enroll(context.Background(), nodeapi.EnrollRequest{Token: tok, Hostname: host, CSR: string(csr), MACs: macs,
		Capacity: nodeapi.Capacity{Cores: 100000, MemoryMiB: 1 << 30, DiskGiB: 1 << 20}})
	return err
}

// nodeIface returns the MAC of an interface in ns.
func nodeIface(ns *lab.NetNS, name string) (string, error) {
	var mac string
	err := ns.Do(func() error {
		ifc, err := net.InterfaceByName(name)
		if err != nil {
			return err
		}
		mac = ifc.HardwareAddr.String()
		return nil
	})
	return mac, err
}

// waitOffer reads DHCP replies until the OFFER for xid.
func waitOffer(t *testing.T, conn net.PacketConn, xid dhcpv4.TransactionID, timeout time.Duration) *dhcpv4.DHCPv4 {
	t.Helper()
	buf := make([]byte, 1500)
	deadline := time.Now().Add(timeout)
	for {
		_ = conn.SetReadDeadline(deadline)
		n, _, err := conn.ReadFrom(buf)
		if err != nil {
			t.Fatalf("no OFFER for the real node: %v", err)
		}
		d, err := dhcpv4.FromBytes(buf[:n])
		if err == nil && d.TransactionID == xid && d.MessageType() == dhcpv4.MessageTypeOffer {
			return d
		}
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
