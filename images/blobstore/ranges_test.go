package blobstore

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestHandlerHostileRanges: bad, huge, empty and piled-up Range headers
// over a real socket get a clear status, never more bytes than the blob,
// and never an impossible Content-Range.
func TestHandlerHostileRanges(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 1<<20+13)
	rand.Read(data)
	d, _, err := s.Put(context.Background(), strings.NewReader(string(data)))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	n := len(data)
	all := fmt.Sprintf("bytes 0-%d/%d", n-1, n)
	unsat := fmt.Sprintf("bytes */%d", n)
	for _, tc := range []struct {
		name, rng    string
		status       int
		contentRange string // "" = none
		body         []byte // nil = not checked
	}{
		{"not a number", "bytes=abc", 416, "", nil},
		{"end before start", "bytes=5-1", 416, "", nil},
		{"another unit", "items=0-5", 416, "", nil},
		{"end overflows int64", "bytes=0-99999999999999999999", 416, "", nil},
		{"double dash", "bytes=--5", 416, "", nil},
		{"empty suffix", "bytes=-0", 416, unsat, nil},
		{"empty suffix, zeros", "bytes=-000", 416, unsat, nil},
		{"only empty suffixes", "bytes=-0, -0", 416, unsat, nil},
		{"empty suffix beside a range", "bytes=-0,10-19", 206, fmt.Sprintf("bytes 10-19/%d", n), data[10:20]},
		{"start past the end", fmt.Sprintf("bytes=%d-", n), 416, unsat, nil},
		{"last byte", fmt.Sprintf("bytes=%d-", n-1), 206, fmt.Sprintf("bytes %d-%d/%d", n-1, n-1, n), data[n-1:]},
		{"end at max int64", "bytes=0-9223372036854775807", 206, all, data},
		{"suffix longer than the blob", "bytes=-99999999999", 206, all, data},
		{"no ranges", "bytes=", 200, "", data},
		{"2,000 overlapping whole ranges", "bytes=" + strings.Repeat("0-,", 1999) + "0-", 200, "", data},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodGet, srv.URL+"/sha256/"+d.Hex(), nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Range", tc.rng)
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(io.LimitReader(resp.Body, int64(n)+4096))
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.status || resp.Header.Get("Content-Range") != tc.contentRange {
				t.Fatalf("Range %.40q: %s, Content-Range %q; want %d, %q", tc.rng, resp.Status, resp.Header.Get("Content-Range"), tc.status, tc.contentRange)
			}
			if len(body) > n {
				t.Fatalf("Range %.40q: %d bytes for a %d-byte blob", tc.rng, len(body), n)
			}
			if tc.body != nil && string(body) != string(tc.body) {
				t.Fatalf("Range %.40q: %d bytes, not the %d expected", tc.rng, len(body), len(tc.body))
			}
		})
	}
	// A stale If-Range makes the server ignore the Range, "-0" included:
	// the whole blob, as for any other range.
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/sha256/"+d.Hex(), nil)
	req.Header.Set("Range", "bytes=-0")
	req.Header.Set("If-Range", `"sha256:stale"`)
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != string(data) {
		t.Fatalf("stale If-Range with bytes=-0: %s, %d bytes", resp.Status, len(body))
	}
	// A Range header past the server's header limit: refused before the
	// handler runs.
	req, _ = http.NewRequest(http.MethodGet, srv.URL+"/sha256/"+d.Hex(), nil)
	req.Header.Set("Range", "bytes="+strings.Repeat("0-0,", 1<<19))
	resp, err = srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("2 MiB Range header: %s", resp.Status)
	}
}

func TestDropEmptySuffixes(t *testing.T) {
	for _, tc := range []struct {
		in, out string
		ok      bool
	}{
		{"bytes=0-5", "bytes=0-5", true},
		{"bytes=-5", "bytes=-5", true},
		{"bytes=-0", "", false},
		{"bytes= -00 ,-0", "", false},
		{"bytes=-0,1-2", "bytes=1-2", true},
		{"bytes=1-2, -0, -10", "bytes=1-2, -10", true},
		{"bytes=-", "bytes=-", true}, // malformed: ServeContent refuses it
		{"items=-0", "items=-0", true},
		{"", "", true},
	} {
		out, ok := dropEmptySuffixes(tc.in)
		if out != tc.out || ok != tc.ok {
			t.Errorf("dropEmptySuffixes(%q) = %q, %v; want %q, %v", tc.in, out, ok, tc.out, tc.ok)
		}
	}
}

// FuzzDropEmptySuffixes: whatever the header, what is left holds no
// empty suffix, and a header without one comes back unchanged.
func FuzzDropEmptySuffixes(f *testing.F) {
	for _, s := range []string{"bytes=0-5", "bytes=-0", "bytes=-0,1-2", "bytes=1-2, -000", "items=-0", "bytes=,,", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out, ok := dropEmptySuffixes(in)
		if !ok {
			if out != "" {
				t.Fatalf("%q: not ok but %q", in, out)
			}
			return
		}
		if again, ok2 := dropEmptySuffixes(out); again != out || !ok2 {
			t.Fatalf("%q: %q still holds an empty suffix (%q)", in, out, again)
		}
		if !strings.Contains(in, "-0") && out != in {
			t.Fatalf("%q changed to %q", in, out)
		}
	})
}
