package pxe

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// ApplianceImages says which whole-disk image installs an appliance and
// serves the images (with Range requests) under bootapi.PathImages.
type ApplianceImages interface {
	// Image returns the sha256 hex digest and size of the appliance's image.
	Image(ctx context.Context, appliance string) (digest string, size int64, err error)
	// ServeImage serves the image with that hex digest.
	ServeImage(w http.ResponseWriter, r *http.Request, digest string)
}

// DirImages keeps one raw disk image per appliance as DIR/<appliance>.img.
// Digests are computed once per file version (size and mtime).
type DirImages struct {
	Dir string

	mu    sync.Mutex
	cache map[string]dirImage // appliance -> last digest
}

type dirImage struct {
	size   int64
	mtime  time.Time
	digest string
}

// ErrNoImage is returned for an appliance with no image.
var ErrNoImage = errors.New("no image for appliance")

// Image implements ApplianceImages.
func (d *DirImages) Image(ctx context.Context, appliance string) (string, int64, error) {
	if err := ValidAppliance(appliance); err != nil {
		return "", 0, err
	}
	path := filepath.Join(d.Dir, appliance+".img")
	st, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return "", 0, fmt.Errorf("%s (%s): %w", appliance, path, ErrNoImage)
	}
	if err != nil {
		return "", 0, err
	}
	d.mu.Lock()
	c, ok := d.cache[appliance]
	d.mu.Unlock()
	if ok && c.size == st.Size() && c.mtime.Equal(st.ModTime()) {
		return c.digest, c.size, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, ctxReader{ctx, f}); err != nil {
		return "", 0, fmt.Errorf("digest %s: %w", path, err)
	}
	c = dirImage{size: st.Size(), mtime: st.ModTime(), digest: hex.EncodeToString(h.Sum(nil))}
	d.mu.Lock()
	if d.cache == nil {
		d.cache = map[string]dirImage{}
	}
	d.cache[appliance] = c
	d.mu.Unlock()
	return c.digest, c.size, nil
}

// ServeImage implements ApplianceImages: only digests handed out by Image
// are served, so the URL space is not a file browser.
func (d *DirImages) ServeImage(w http.ResponseWriter, r *http.Request, digest string) {
	appliance := d.byDigest(strings.ToLower(digest))
	if appliance == "" {
		// Not handed out by this process: after a frontend restart an
		// installer resumes with a digest from the previous process.
		d.scan(r.Context())
		appliance = d.byDigest(strings.ToLower(digest))
	}
	if appliance == "" {
		http.Error(w, "no such image", http.StatusNotFound)
		return
	}
	f, err := os.Open(filepath.Join(d.Dir, appliance+".img"))
	if err != nil {
		http.Error(w, "image gone", http.StatusNotFound)
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		http.Error(w, "image unreadable", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("ETag", `"sha256:`+digest+`"`)
	http.ServeContent(w, r, "", st.ModTime(), f)
}

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

func (d *DirImages) byDigest(digest string) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	for a, c := range d.cache {
		if c.digest == digest {
			return a
		}
	}
	return ""
}

// scan computes the digests of every appliance image in Dir.
func (d *DirImages) scan(ctx context.Context) {
	ms, _ := filepath.Glob(filepath.Join(d.Dir, "*.img"))
	for _, m := range ms {
		_, _, _ = d.Image(ctx, strings.TrimSuffix(filepath.Base(m), ".img"))
	}
}
