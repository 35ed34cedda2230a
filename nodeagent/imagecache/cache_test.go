package imagecache

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

func blobOf(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestGetVerifiesAndCaches(t *testing.T) {
	data := bytes.Repeat([]byte("ironbark image "), 100000)
	var gets atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gets.Add(1)
		http.ServeContent(w, r, "img", time.Time{}, bytes.NewReader(data))
	}))
	defer srv.Close()
	c, err := New(t.TempDir(), srv.Client(), quiet())
	if err != nil {
		t.Fatal(err)
	}
	b := Blob{Digest: blobOf(data), Size: int64(len(data)), URL: srv.URL}
	// Eight launches at once share one download.
	var wg sync.WaitGroup
	paths := make([]string, 8)
	for i := range paths {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p, err := c.Get(context.Background(), b)
			if err != nil {
				t.Error(err)
			}
			paths[i] = p
		}()
	}
	wg.Wait()
	if gets.Load() != 1 {
		t.Fatalf("%d downloads for 8 concurrent launches, want 1", gets.Load())
	}
	got, err := os.ReadFile(paths[0])
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("cached blob differs (%v)", err)
	}
	if _, err := c.Get(context.Background(), b); err != nil || gets.Load() != 1 {
		t.Fatalf("warm get downloaded again (%d gets, %v)", gets.Load(), err)
	}
}

// A download cut in the middle resumes with Range where it stopped.
func TestResume(t *testing.T) {
	data := bytes.Repeat([]byte{1, 2, 3, 4, 5, 6, 7}, 300000)
	var calls atomic.Int32
	var ranges []string
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		ranges = append(ranges, r.Header.Get("Range"))
		mu.Unlock()
		if calls.Add(1) == 1 {
			// Promise everything, send a third, then hang up.
			w.Header().Set("Content-Length", "2100000")
			w.WriteHeader(200)
			w.Write(data[:len(data)/3])
			panic(http.ErrAbortHandler)
		}
		http.ServeContent(w, r, "img", time.Time{}, bytes.NewReader(data))
	}))
	defer srv.Close()
	c, _ := New(t.TempDir(), srv.Client(), quiet())
	p, err := c.Get(context.Background(), Blob{Digest: blobOf(data), Size: int64(len(data)), URL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(p)
	if !bytes.Equal(got, data) {
		t.Fatal("resumed blob differs")
	}
	if len(ranges) != 2 || ranges[1] == "" {
		t.Fatalf("requests' Range headers %q: want a resume", ranges)
	}
}

func TestCorruptIsNotCached(t *testing.T) {
	data := []byte("the real image")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "img", time.Time{}, bytes.NewReader([]byte("a corrupt image")))
	}))
	defer srv.Close()
	dir := t.TempDir()
	c, _ := New(dir, srv.Client(), quiet())
	_, err := c.Get(context.Background(), Blob{Digest: blobOf(data), URL: srv.URL})
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("corrupt download: %v, want ErrCorrupt", err)
	}
	for _, sub := range []string{"sha256", "partial"} {
		ents, _ := os.ReadDir(filepath.Join(dir, sub))
		if len(ents) != 0 {
			t.Fatalf("%s holds %d files after a corrupt download", sub, len(ents))
		}
	}
	if c.Has(blobOf(data)) {
		t.Fatal("corrupt blob cached")
	}
	// Truncated (shorter than its size) is corrupt too.
	_, err = c.Get(context.Background(), Blob{Digest: blobOf([]byte("a corrupt image!")), Size: 16, URL: srv.URL})
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("truncated download: %v, want ErrCorrupt", err)
	}
}

func TestBadDigestAndMissing(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	c, _ := New(t.TempDir(), srv.Client(), quiet())
	if _, err := c.Get(context.Background(), Blob{Digest: "md5:abc", URL: srv.URL}); err == nil {
		t.Fatal("bad digest accepted")
	}
	if _, err := c.Get(context.Background(), Blob{Digest: blobOf([]byte("x")), URL: srv.URL}); err == nil {
		t.Fatal("404 accepted")
	}
}

func TestIsNoSpace(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{&os.PathError{Op: "write", Path: "/cache/partial/x", Err: syscall.ENOSPC}, true},
		{fmt.Errorf("fetch: %w", &os.PathError{Op: "write", Path: "p", Err: syscall.EDQUOT}), true},
		{&os.PathError{Op: "open", Path: "p", Err: syscall.ENOENT}, false},
		{errors.New("no space left on device"), false}, // only the errno counts, not the words
		{nil, false},
	} {
		if got := IsNoSpace(c.err); got != c.want {
			t.Errorf("IsNoSpace(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}
