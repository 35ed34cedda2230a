package blobstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"testing/iotest"
	"time"
)

func digestOf(b []byte) Digest { return Digest(fmt.Sprintf("sha256:%x", sha256.Sum256(b))) }

func entries(t *testing.T, dir string) int {
	t.Helper()
	n := 0
	for _, sub := range []string{"blobs/sha256", "blobs/tmp"} {
		es, err := os.ReadDir(filepath.Join(dir, sub))
		if err != nil {
			t.Fatal(err)
		}
		n += len(es)
	}
	return n
}

func TestPutGetRange(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("0123456789"), 100_000)
	d, n, err := s.Put(context.Background(), bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if d != digestOf(data) || n != int64(len(data)) {
		t.Fatalf("Put = %s %d", d, n)
	}
	if _, err := os.Stat(filepath.Join(dir, "blobs", "sha256", d.Hex())); err != nil {
		t.Fatal(err)
	}
	if err := s.Verify(d); err != nil {
		t.Fatal(err)
	}
	// Same content again: same digest, one file.
	if d2, _, err := s.Put(context.Background(), bytes.NewReader(data)); err != nil || d2 != d {
		t.Fatalf("second Put = %s, %v", d2, err)
	}
	if got := entries(t, dir); got != 1 {
		t.Fatalf("%d entries in store, want 1", got)
	}

	mux := http.NewServeMux()
	mux.Handle("/blobs/", s.HandlerAt("/blobs"))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	url := srv.URL + URLPath("/blobs", d)

	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Equal(body, data) || resp.Header.Get("ETag") != `"`+string(d)+`"` {
		t.Fatalf("GET: %d, %d bytes, etag %q", resp.StatusCode, len(body), resp.Header.Get("ETag"))
	}

	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Range", "bytes=10-19")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusPartialContent || string(body) != "0123456789" ||
		resp.Header.Get("Content-Range") != fmt.Sprintf("bytes 10-19/%d", len(data)) {
		t.Fatalf("Range: %d %q %q", resp.StatusCode, body, resp.Header.Get("Content-Range"))
	}

	// Resume from the middle, as the node agent does after a cut.
	req, _ = http.NewRequest("GET", url, nil)
	req.Header.Set("Range", fmt.Sprintf("bytes=%d-", len(data)-5))
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusPartialContent || string(body) != "56789" {
		t.Fatalf("open range: %d %q", resp.StatusCode, body)
	}

	resp, err = http.Head(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.ContentLength != int64(len(data)) {
		t.Fatalf("HEAD: %d len %d", resp.StatusCode, resp.ContentLength)
	}

	for path, want := range map[string]int{
		URLPath("/blobs", digestOf([]byte("other"))): 404,
		"/blobs/sha256/../../etc/passwd":             404,
		"/blobs/sha256/zz":                           404,
		"/blobs/md5/" + d.Hex():                      404,
	} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s: %d, want %d", path, resp.StatusCode, want)
		}
	}
	resp, err = http.Post(url, "application/octet-stream", bytes.NewReader(nil))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d", resp.StatusCode)
	}
}

func TestBadUploadsLeaveNothing(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("x"), 4096)
	ctx := context.Background()

	_, _, err = s.PutExpect(ctx, bytes.NewReader(data[:1000]), Expect{Digest: digestOf(data), Size: int64(len(data))})
	if !errors.Is(err, ErrSizeMismatch) {
		t.Errorf("truncated: err = %v", err)
	}
	corrupt := append([]byte(nil), data...)
	corrupt[7] = 'y'
	_, _, err = s.PutExpect(ctx, bytes.NewReader(corrupt), Expect{Digest: digestOf(data)})
	if !errors.Is(err, ErrDigestMismatch) {
		t.Errorf("corrupt: err = %v", err)
	}
	_, _, err = s.Put(ctx, iotest.TimeoutReader(bytes.NewReader(data)))
	if err == nil {
		t.Errorf("reader error: no error")
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, _, err = s.Put(cctx, bytes.NewReader(data)); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: err = %v", err)
	}
	if _, err := s.Open(digestOf(data)); !errors.Is(err, ErrNotFound) {
		t.Errorf("Open after failures: %v", err)
	}
	if got := entries(t, dir); got != 0 {
		t.Fatalf("%d files left in the store after failed uploads", got)
	}
	// Bit rot is detected.
	d, _, err := s.Put(ctx, bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.Path(d), corrupt, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.Verify(d); !errors.Is(err, ErrDigestMismatch) {
		t.Errorf("Verify of rotten blob: %v", err)
	}
}

func TestConcurrentPuts(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, err := s.Put(context.Background(), bytes.NewReader(bytes.Repeat([]byte{byte(i % 2)}, 1<<16)))
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	ds, err := s.List()
	if err != nil || len(ds) != 2 {
		t.Fatalf("List = %v, %v", ds, err)
	}
}

func FuzzParseDigest(f *testing.F) {
	f.Add("sha256:" + string(bytes.Repeat([]byte("a"), 64)))
	f.Add("../../etc")
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDigest(s)
		if err == nil && (len(d.Hex()) != 64 || filepath.Base(d.Hex()) != d.Hex()) {
			t.Fatalf("accepted %q", s)
		}
	})
}

func TestStaleIngestsRemoved(t *testing.T) {
	dir := t.TempDir()
	if _, err := Open(dir); err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(dir, "blobs", "tmp", "ingest-123")
	fresh := filepath.Join(dir, "blobs", "tmp", "ingest-456")
	os.WriteFile(stale, []byte("half"), 0o644)
	os.WriteFile(fresh, []byte("half"), 0o644)
	old := time.Now().Add(-48 * time.Hour)
	os.Chtimes(stale, old, old)
	if _, err := Open(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("stale ingest kept: %v", err)
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("fresh ingest removed: %v", err)
	}
}
