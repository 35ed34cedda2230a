package nodeagent

import (
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"ironbark/internal/nodeapi"
)

var testSpecs = []nodeapi.InstanceSpec{
	{InstanceID: "i-0123456789abcdef0", MAC: "d0:0d:12:34:56:78", PrivateIP: "10.88.0.10",
		VMType: nodeapi.VMType{Name: "m1.small"}, Image: nodeapi.Artifact{ID: "emi-12345678"},
		KeyName: "mykey", PublicKey: "ssh-ed25519 AAAA test\n", UserData: []byte("#!/bin/sh\necho hi\n"), Desired: "running"},
	{InstanceID: "i-0fedcba987654321f", MAC: "d0:0d:aa:bb:cc:dd", PrivateIP: "10.99.0.10", Desired: "running"},
}

var testHost = netip.MustParsePrefix("10.88.0.1/24")

func dhcpRequest(t *testing.T, mac string, mt dhcpv4.MessageType, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	t.Helper()
	hw, err := net.ParseMAC(mac)
	if err != nil {
		t.Fatal(err)
	}
	req, err := dhcpv4.New(append([]dhcpv4.Modifier{dhcpv4.WithHwAddr(hw), dhcpv4.WithMessageType(mt)}, mods...)...)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

func TestDHCPAnswer(t *testing.T) {
	offer := dhcpAnswer(dhcpRequest(t, "D0:0D:12:34:56:78", dhcpv4.MessageTypeDiscover), testHost, testSpecs)
	if offer == nil || offer.MessageType() != dhcpv4.MessageTypeOffer || offer.YourIPAddr.String() != "10.88.0.10" {
		t.Fatalf("offer: %v", offer)
	}
	if m := net.IP(offer.SubnetMask()).String(); m != "255.255.255.0" {
		t.Fatalf("netmask %s", m)
	}
	if r := offer.Router(); len(r) != 1 || r[0].String() != "10.88.0.1" || offer.ServerIdentifier().String() != "10.88.0.1" {
		t.Fatalf("router %v, server id %v", r, offer.ServerIdentifier())
	}
	if lt := offer.IPAddressLeaseTime(0); lt != time.Hour || offer.HostName() != "ip-10-88-0-10" {
		t.Fatalf("lease %v, hostname %q", lt, offer.HostName())
	}

	ack := dhcpAnswer(dhcpRequest(t, "d0:0d:12:34:56:78", dhcpv4.MessageTypeRequest,
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP("10.88.0.10"))),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.ParseIP("10.88.0.1")))), testHost, testSpecs)
	if ack == nil || ack.MessageType() != dhcpv4.MessageTypeAck || ack.YourIPAddr.String() != "10.88.0.10" {
		t.Fatalf("ack: %v", ack)
	}
	renew := dhcpAnswer(dhcpRequest(t, "d0:0d:12:34:56:78", dhcpv4.MessageTypeRequest,
		dhcpv4.WithClientIP(net.ParseIP("10.88.0.10"))), testHost, testSpecs)
	if renew == nil || renew.MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("renew: %v", renew)
	}
	nak := dhcpAnswer(dhcpRequest(t, "d0:0d:12:34:56:78", dhcpv4.MessageTypeRequest,
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP("10.88.0.77")))), testHost, testSpecs)
	if nak == nil || nak.MessageType() != dhcpv4.MessageTypeNak || !nak.YourIPAddr.IsUnspecified() {
		t.Fatalf("a request for another address: %v, want NAK", nak)
	}

	for name, req := range map[string]*dhcpv4.DHCPv4{
		"unknown MAC":     dhcpRequest(t, "52:54:00:00:00:01", dhcpv4.MessageTypeDiscover),
		"other subnet":    dhcpRequest(t, "d0:0d:aa:bb:cc:dd", dhcpv4.MessageTypeDiscover),
		"inform":          dhcpRequest(t, "d0:0d:12:34:56:78", dhcpv4.MessageTypeInform),
		"relayed":         dhcpRequest(t, "d0:0d:12:34:56:78", dhcpv4.MessageTypeDiscover, dhcpv4.WithRelay(net.ParseIP("10.1.0.1"))),
		"other server's":  dhcpRequest(t, "d0:0d:12:34:56:78", dhcpv4.MessageTypeRequest, dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.ParseIP("10.88.0.2")))),
		"terminated spec": dhcpRequest(t, "d0:0d:00:00:00:00", dhcpv4.MessageTypeDiscover),
	} {
		if r := dhcpAnswer(req, testHost, testSpecs); r != nil {
			t.Errorf("%s: answered %v", name, r)
		}
	}
}

func TestMetadata(t *testing.T) {
	md, err := newMetadataHandler(func() []nodeapi.InstanceSpec { return testSpecs }, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	do := func(method, path, from string, hdr map[string]string) (int, string) {
		t.Helper()
		r := httptest.NewRequest(method, "http://169.254.169.254"+path, nil)
		r.RemoteAddr = from + ":40000"
		for k, v := range hdr {
			r.Header.Set(k, v)
		}
		w := httptest.NewRecorder()
		md.ServeHTTP(w, r)
		b, _ := io.ReadAll(w.Result().Body)
		return w.Code, string(b)
	}
	const me = "10.88.0.10"
	for path, want := range map[string]string{
		"/latest/meta-data/instance-id":                   "i-0123456789abcdef0",
		"/latest/meta-data/local-ipv4":                    "10.88.0.10",
		"/latest/meta-data/mac":                           "d0:0d:12:34:56:78",
		"/latest/meta-data/instance-type":                 "m1.small",
		"/latest/meta-data/ami-id":                        "emi-12345678",
		"/latest/meta-data/hostname":                      "ip-10-88-0-10.ironbark.internal",
		"/latest/meta-data/public-keys/":                  "0=mykey\n",
		"/latest/meta-data/public-keys/0/openssh-key":     "ssh-ed25519 AAAA test\n",
		"/2009-04-04/meta-data/public-keys/0/openssh-key": "ssh-ed25519 AAAA test\n",
		"/latest/user-data":                               "#!/bin/sh\necho hi\n",
	} {
		if code, body := do("GET", path, me, nil); code != 200 || body != want {
			t.Errorf("GET %s: %d %q, want %q", path, code, body, want)
		}
	}
	if code, body := do("GET", "/latest/meta-data/", me, nil); code != 200 ||
		!strings.Contains(body, "instance-id\n") || !strings.Contains(body, "public-keys/\n") {
		t.Errorf("listing: %d %q", code, body)
	}
	for path, from := range map[string]string{
		"/latest/meta-data/nothing":      me,
		"/latest/meta-data/public-keys/": "10.99.0.10", // no key
		"/latest/user-data":              "10.99.0.10", // none
		"/other/meta-data/instance-id":   me,
	} {
		if code, _ := do("GET", path, from, nil); code != http.StatusNotFound {
			t.Errorf("GET %s from %s: %d, want 404", path, from, code)
		}
	}
	if code, _ := do("GET", "/latest/meta-data/instance-id", "10.88.0.99", nil); code != http.StatusForbidden {
		t.Errorf("a stranger got %d, want 403", code)
	}

	// IMDSv2: a token from PUT, good for its instance only.
	code, tok := do("PUT", "/latest/api/token", me, map[string]string{tokenTTLHeader: "60"})
	if code != 200 || tok == "" {
		t.Fatalf("token: %d %q", code, tok)
	}
	if code, body := do("GET", "/latest/meta-data/instance-id", me, map[string]string{tokenHeader: tok}); code != 200 || body != "i-0123456789abcdef0" {
		t.Fatalf("with token: %d %q", code, body)
	}
	if code, _ := do("GET", "/latest/meta-data/instance-id", "10.99.0.10", map[string]string{tokenHeader: tok}); code != http.StatusUnauthorized {
		t.Errorf("another instance's token: %d, want 401", code)
	}
	if code, _ := do("GET", "/latest/meta-data/instance-id", me, map[string]string{tokenHeader: "bogus"}); code != http.StatusUnauthorized {
		t.Errorf("bogus token: %d, want 401", code)
	}
	if code, _ := do("PUT", "/latest/api/token", me, nil); code != http.StatusBadRequest {
		t.Errorf("token without TTL: %d, want 400", code)
	}
	md.now = func() time.Time { return time.Now().Add(2 * time.Minute) }
	if code, _ := do("GET", "/latest/meta-data/instance-id", me, map[string]string{tokenHeader: tok}); code != http.StatusUnauthorized {
		t.Errorf("expired token: %d, want 401", code)
	}
}
