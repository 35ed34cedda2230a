package nodeagent

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"ironbark/internal/nodeapi"
	"ironbark/internal/pki"
)

// TestEnrollRetriesServerFaults: the controller failing (5xx) makes the
// agent try again; a refusal (4xx) ends it with the controller's reason.
func TestEnrollRetriesServerFaults(t *testing.T) {
	ca, err := pki.LoadOrCreateCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.ServerCertificate([]string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int32
	var refuse atomic.Bool
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := calls.Add(1)
		w.Header().Set("Content-Type", "application/json")
		switch {
		case refuse.Load():
			w.WriteHeader(http.StatusForbidden)
			_, _ = w.Write([]byte(`{"error":"enrollment token is unknown, used or expired"}`))
		case n < 3:
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = w.Write([]byte(`{"error":"internal error on the controller; retry later"}`))
		default:
			// The third try reaches a controller that works: stop the
			// agent's retries by refusing from now on, so the test ends.
			refuse.Store(true)
			w.WriteHeader(http.StatusForbidden)
			_, _ = w.Write([]byte(`{"error":"enrollment token is unknown, used or expired"}`))
		}
	}))
	srv.TLS = ca.ServerTLS(ca.ServerChain(cert))
	srv.StartTLS()
	defer srv.Close()
	tok := "ibt1.secret." + ca.Fingerprint()
	a, err := New(Config{Controller: srv.URL, Token: tok, LibvirtURI: "test:///default", StateDir: t.TempDir(),
		Logger: testLogger(t), Hostname: "h"})
	if err != nil {
		t.Fatal(err)
	}
	err = a.Run(context.Background())
	var se *nodeapi.StatusError
	if !errors.As(err, &se) || se.Code != http.StatusForbidden || !strings.Contains(se.Message, "unknown, used or expired") {
		t.Fatalf("Run: %v, want the 403 refusal", err)
	}
	if n := calls.Load(); n != 3 {
		t.Fatalf("%d enrollment requests, want 3 (two 500s retried, the 403 final)", n)
	}
}
