package pxe

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"ironbark/images/blobstore"
	"ironbark/internal/store/storetest"
	"ironbark/pxe/bootapi"
)

// TestImageRangeResume: the image route over a real socket answers what
// an interrupted install needs to resume: a GET dropped halfway, then the
// rest with Range and If-Range gives back exactly the image; a stale
// If-Range gets the whole image again; impossible ranges and unknown
// digests are refused.
func TestImageRangeResume(t *testing.T) {
	db := storetest.SQLite(t, Migrations())
	ctx := context.Background()
	dir := t.TempDir()
	blobs, err := Layout{DataDir: dir}.Blobs()
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 3<<20+12345)
	rand.Read(data)
	img := filepath.Join(dir, "compute.img")
	if err := os.WriteFile(img, data, 0o644); err != nil {
		t.Fatal(err)
	}
	images := &BlobImages{DB: db, Blobs: blobs}
	d, size, err := images.Set(ctx, "compute", img)
	if err != nil || size != int64(len(data)) {
		t.Fatalf("set image: %v, size %d", err, size)
	}
	boot := &HTTPBoot{Images: images}
	srv := httptest.NewServer(boot.Handler())
	t.Cleanup(srv.Close)
	url := srv.URL + blobstore.URLPath(bootapi.PathImages, d)

	get := func(hdr ...string) *http.Response {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	// Dropped halfway.
	resp := get()
	half := len(data)/2 + 7
	first := make([]byte, half)
	if _, err := io.ReadFull(resp.Body, first); err != nil {
		t.Fatal(err)
	}
	etag := resp.Header.Get("ETag")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Accept-Ranges") != "bytes" || etag == "" {
		t.Fatalf("GET: %s, Accept-Ranges %q, ETag %q", resp.Status, resp.Header.Get("Accept-Ranges"), etag)
	}
	resp.Body.Close()
	// Resumed.
	resp = get("Range", fmt.Sprintf("bytes=%d-", half), "If-Range", etag)
	rest, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusPartialContent ||
		resp.Header.Get("Content-Range") != fmt.Sprintf("bytes %d-%d/%d", half, len(data)-1, len(data)) {
		t.Fatalf("resume: %s %q %v", resp.Status, resp.Header.Get("Content-Range"), err)
	}
	if !bytes.Equal(append(first, rest...), data) {
		t.Fatal("resumed image differs from the original")
	}
	// The image changed meanwhile (another ETag): the whole image again.
	resp = get("Range", fmt.Sprintf("bytes=%d-", half), "If-Range", `"sha256:stale"`)
	if all, err := io.ReadAll(resp.Body); err != nil || resp.StatusCode != http.StatusOK || !bytes.Equal(all, data) {
		t.Fatalf("stale If-Range: %s, %d bytes, %v", resp.Status, len(all), err)
	}
	// A middle slice, and two at once.
	resp = get("Range", "bytes=100-199")
	if part, _ := io.ReadAll(resp.Body); resp.StatusCode != http.StatusPartialContent || !bytes.Equal(part, data[100:200]) {
		t.Fatalf("bytes=100-199: %s, %d bytes", resp.Status, len(part))
	}
	resp = get("Range", "bytes=0-9,1000-1009")
	mt, params, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if resp.StatusCode != http.StatusPartialContent || mt != "multipart/byteranges" {
		t.Fatalf("two ranges: %s %q", resp.Status, resp.Header.Get("Content-Type"))
	}
	mr := multipart.NewReader(resp.Body, params["boundary"])
	for _, want := range [][]byte{data[0:10], data[1000:1010]} {
		p, err := mr.NextPart()
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := io.ReadAll(p); !bytes.Equal(got, want) {
			t.Fatalf("part %q: got %x", p.Header.Get("Content-Range"), got)
		}
	}
	// Past the end: 416 with the size.
	resp = get("Range", fmt.Sprintf("bytes=%d-", len(data)))
	if resp.StatusCode != http.StatusRequestedRangeNotSatisfiable || resp.Header.Get("Content-Range") != fmt.Sprintf("bytes */%d", len(data)) {
		t.Fatalf("past the end: %s %q", resp.Status, resp.Header.Get("Content-Range"))
	}
	// A blob no appliance installs is not served.
	other := strings.Repeat("0", 64)
	resp, err = http.Get(srv.URL + bootapi.PathImages + "sha256/" + other)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("unknown digest: %s", resp.Status)
	}
}
