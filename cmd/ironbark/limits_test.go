package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	sdk "github.com/aws/aws-sdk-go-v2/service/ec2"

	"ironbark/controller"
	"ironbark/controller/ec2/ec2test"
	"ironbark/internal/datadir"
	"ironbark/internal/httplimit"
	"ironbark/internal/nodeapi"
	"ironbark/internal/pki"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// 600 stalled connections from one client on each API listener while a
// real client keeps getting answers: the stalled client holds only its
// cap, the connections past it are closed at once.
func TestStalledClientsDoNotStarveTheAPIs(t *testing.T) {
	nodeAddr := freeAddr(t)
	dataDir, endpoint := startControllerIn(t, t.TempDir(), "--listen", "127.0.0.1:0", "--node-listen", nodeAddr)
	ctx := context.Background()
	db := dataDirStore(t, dataDir)
	admin, err := controller.EnsureAdmin(ctx, db)
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	ca, err := pki.LoadOrCreateCA(datadir.Dir(dataDir).PKI())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(endpoint, "https://") {
		t.Fatalf("the EC2 API is not HTTPS by default: %s", endpoint)
	}
	ec2Client := ec2test.ClientCA(endpoint, admin.AccessKey, admin.SecretKey, ca.CertPEM())
	nodeClient := &http.Client{Transport: &http.Transport{TLSClientConfig: pki.PinnedTLS(ca.Fingerprint())}}
	defer nodeClient.CloseIdleConnections()
	answers := func() {
		t.Helper()
		if _, err := ec2Client.DescribeRegions(ctx, &sdk.DescribeRegionsInput{}); err != nil {
			t.Fatalf("EC2 API under attack: %v", err)
		}
		resp, err := nodeClient.Post("https://"+nodeAddr+nodeapi.PathEnroll, "application/json",
			strings.NewReader(`{"token": "garbage", "hostname": "h", "csr": "x"}`))
		if err != nil {
			t.Fatalf("node API under attack: %v", err)
		}
		var e nodeapi.Error
		_ = json.NewDecoder(resp.Body).Decode(&e)
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("node API under attack: %d %q", resp.StatusCode, e.Error)
		}
	}
	answers()

	ec2Addr := strings.TrimSuffix(strings.TrimPrefix(endpoint, "https://"), "/")
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.CertPEM())
	tlsFor := map[string]*tls.Config{ec2Addr: {RootCAs: pool, ServerName: "127.0.0.1"}, nodeAddr: pki.PinnedTLS(ca.Fingerprint())}
	var stalled []net.Conn
	defer func() {
		for _, c := range stalled {
			c.Close()
		}
	}()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
	refused := map[string]int{}
	for i := 0; i < 600; i++ {
		for _, addr := range []string{ec2Addr, nodeAddr} {
			raw, err := d.Dial("tcp", addr)
			if err != nil {
				t.Fatalf("stalled connection %d: %v", i, err)
			}
			stalled = append(stalled, raw)
			// A request whose body never comes, on a connection the
			// server accepted; one past the cap fails its handshake.
			c := tls.Client(raw, tlsFor[addr])
			_ = c.SetDeadline(time.Now().Add(30 * time.Second)) // a watchdog, not a measure
			if err := c.Handshake(); err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					t.Fatalf("handshake %d with %s hung", i, addr)
				}
				refused[addr]++
				continue
			}
			// Handlers that wait for the rest of the body.
			req := "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000000\r\n\r\nAction="
			if addr == nodeAddr {
				req = "POST " + nodeapi.PathEnroll + " HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n{\"token\": \""
			}
			_, _ = io.WriteString(c, req)
		}
		if i%100 == 0 {
			answers()
		}
	}
	answers()
	// The stalled client held its cap and no more.
	for _, addr := range []string{ec2Addr, nodeAddr} {
		if want := 600 - httplimit.Default().PerClient; refused[addr] != want {
			t.Errorf("%s (ec2 %s): %d of 600 stalled connections refused, want %d (all past the per-client cap)", addr, ec2Addr, refused[addr], want)
		}
	}
}
