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
	"sync"
	"testing"
	"time"

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

// TestImageStreamsHangUp: many installers at once on the image route,
// each hanging up at a different point of its download and resuming
// with Range and If-Range, all get exactly the image; afterwards the
// server holds none of the image open (a dropped stream closes its file)
// and still serves.
func TestImageStreamsHangUp(t *testing.T) {
	db := storetest.SQLite(t, Migrations())
	ctx := context.Background()
	dir := t.TempDir()
	blobs, err := Layout{DataDir: dir}.Blobs()
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 4<<20+777)
	rand.Read(data)
	img := filepath.Join(dir, "compute.img")
	if err := os.WriteFile(img, data, 0o644); err != nil {
		t.Fatal(err)
	}
	images := &BlobImages{DB: db, Blobs: blobs}
	d, _, err := images.Set(ctx, "compute", img)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer((&HTTPBoot{Images: images}).Handler())
	t.Cleanup(srv.Close)
	url := srv.URL + blobstore.URLPath(bootapi.PathImages, d)
	const streams = 64
	errs := make(chan error, streams)
	var wg sync.WaitGroup
	for i := range streams {
		wg.Go(func() { errs <- hangUpAndResume(srv.Client(), url, data, i*len(data)/streams+i) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	// The handlers of the dropped streams end once their next write
	// fails; none may keep the blob open.
	blob := blobs.Path(d)
	for i := 0; openCount(t, blob) > 0; i++ {
		if i == 600 {
			t.Fatalf("the server still holds %d descriptors of the image after every client hung up", openCount(t, blob))
		}
		time.Sleep(50 * time.Millisecond)
	}
	resp, err := srv.Client().Get(url)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || !bytes.Equal(got, data) {
		t.Fatalf("after the hang-ups: %s, %d bytes, %v", resp.Status, len(got), err)
	}
}

// hangUpAndResume reads cut bytes of the image, drops the connection,
// then fetches the rest with Range and If-Range and compares the whole.
func hangUpAndResume(c *http.Client, url string, data []byte, cut int) error {
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	first := make([]byte, cut)
	_, err = io.ReadFull(resp.Body, first)
	etag := resp.Header.Get("ETag")
	resp.Body.Close() // unread body: the transport drops the connection
	if err != nil || resp.StatusCode != http.StatusOK || etag == "" {
		return fmt.Errorf("GET cut at %d: %s, ETag %q, %v", cut, resp.Status, etag, err)
	}
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Range", fmt.Sprintf("bytes=%d-", cut))
	req.Header.Set("If-Range", etag)
	resp, err = c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	rest, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusPartialContent || !bytes.Equal(append(first, rest...), data) {
		return fmt.Errorf("resume at %d: %s, %d bytes, %v (or the image differs)", cut, resp.Status, len(rest), err)
	}
	return nil
}

// openCount is how many of this process's descriptors are open on path.
func openCount(t *testing.T, path string) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		if p, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name())); err == nil && p == path {
			n++
		}
	}
	return n
}
