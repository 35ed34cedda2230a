package main

import (
	"context"
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
	"ironbark/internal/nodeapi"
	"ironbark/internal/pki"
	"ironbark/internal/store"
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
	url, err := controller.StoreURL(dataDir, "")
	if err != nil {
		t.Fatal(err)
	}
	db, err := store.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	admin, err := controller.EnsureAdmin(ctx, db)
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	ca, err := pki.LoadOrCreateCA(datadir.Dir(dataDir).PKI())
	if err != nil {
		t.Fatal(err)
	}
	ec2Client := ec2test.Client(endpoint, admin.AccessKey, admin.SecretKey)
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

	ec2Addr := strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(endpoint, "http://"), "https://"), "/")
	var stalled []net.Conn
	defer func() {
		for _, c := range stalled {
			c.Close()
		}
	}()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
	for i := 0; i < 600; i++ {
		for _, addr := range []string{ec2Addr, nodeAddr} {
			c, err := d.Dial("tcp", addr)
			if err != nil {
				t.Fatalf("stalled connection %d: %v", i, err)
			}
			stalled = append(stalled, c)
			if addr == nodeAddr {
				// A TLS record header promising a ClientHello that
				// never comes.
				_, _ = c.Write([]byte{0x16, 0x03, 0x01, 0x00, 0xff})
			} else {
				// Headers promising a body that never comes.
				_, _ = io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n{")
			}
		}
		if i%100 == 0 {
			answers()
		}
	}
	answers()
	// The last connections are past the cap: the server closed them.
	for _, c := range stalled[len(stalled)-2:] {
		_ = c.SetReadDeadline(time.Now().Add(30 * time.Second)) // a watchdog, not a measure
		_, err := io.ReadAll(c)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("connection %s past the per-client cap was kept open", c.RemoteAddr())
		}
	}
}
