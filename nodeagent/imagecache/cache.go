package imagecache

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"ironbark/images/blobstore"
	"ironbark/internal/retry"
)

// ErrCorrupt is returned when a download does not match its digest or size.
var ErrCorrupt = errors.New("image does not match its digest")

// Blob names what to fetch.
type Blob struct {
	Digest string // sha256:<hex>
	Size   int64  // 0 when unknown
	URL    string
}

// Cache is a directory of verified blobs: DIR/sha256/<hex>, with partial
// downloads in DIR/partial.
type Cache struct {
	dir     string
	hc      *http.Client
	log     *slog.Logger
	retries int

	mu       sync.Mutex
	inflight map[string]*call
}

type call struct {
	done   chan struct{}
	path   string
	err    error
	refs   int
	cancel context.CancelFunc
}

// New opens (creating) a cache in dir. hc fetches the blobs (the node's
// mTLS client, so the controller's blob store can insist on it).
func New(dir string, hc *http.Client, log *slog.Logger) (*Cache, error) {
	for _, d := range []struct {
		path string
		mode os.FileMode
	}{
		// qemu (libvirt-qemu) opens backing files, kernels and ramdisks
		// here once libvirt's DAC driver has labelled them for it: the
		// path must let it through (search, no listing); the blobs stay
		// 0600.
		{dir, 0o711}, {filepath.Join(dir, "sha256"), 0o711}, {filepath.Join(dir, "partial"), 0o700},
	} {
		if err := os.MkdirAll(d.path, d.mode); err != nil {
			return nil, fmt.Errorf("image cache: %w", err)
		}
		if err := os.Chmod(d.path, d.mode); err != nil {
			return nil, fmt.Errorf("image cache: %w", err)
		}
	}
	if log == nil {
		log = slog.Default()
	}
	return &Cache{dir: dir, hc: hc, log: log, retries: 3, inflight: map[string]*call{}}, nil
}

// parseDigest checks a digest and returns its hex part, the blob's file
// name.
func parseDigest(d string) (string, error) {
	pd, err := blobstore.ParseDigest(d)
	if err != nil {
		return "", err
	}
	return pd.Hex(), nil
}

// Path is where a verified blob lives (it may not exist yet).
func (c *Cache) Path(digest string) (string, error) {
	h, err := parseDigest(digest)
	if err != nil {
		return "", err
	}
	return filepath.Join(c.dir, "sha256", h), nil
}

// Has reports whether the blob is cached.
func (c *Cache) Has(digest string) bool {
	p, err := c.Path(digest)
	if err != nil {
		return false
	}
	_, err = os.Stat(p)
	return err == nil
}

// Get returns the path of the verified blob, downloading it if needed.
// Callers asking for the same digest at once share one download; it goes on
// as long as one of them still waits.
func (c *Cache) Get(ctx context.Context, b Blob) (string, error) {
	final, err := c.Path(b.Digest)
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(final); err == nil {
		return final, nil
	}
	c.mu.Lock()
	cl, ok := c.inflight[final]
	if !ok {
		dctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		cl = &call{done: make(chan struct{}), cancel: cancel}
		c.inflight[final] = cl
		go func() {
			cl.path, cl.err = c.fetch(dctx, b, final)
			cancel()
			c.mu.Lock()
			delete(c.inflight, final)
			c.mu.Unlock()
			close(cl.done)
		}()
	}
	cl.refs++
	c.mu.Unlock()
	select {
	case <-cl.done:
		return cl.path, cl.err
	case <-ctx.Done():
		c.mu.Lock()
		cl.refs--
		if cl.refs == 0 {
			cl.cancel()
		}
		c.mu.Unlock()
		return "", ctx.Err()
	}
}

func (c *Cache) fetch(ctx context.Context, b Blob, final string) (string, error) {
	if b.URL == "" {
		return "", fmt.Errorf("fetch %s: no URL", b.Digest)
	}
	h, _ := parseDigest(b.Digest)
	partial := filepath.Join(c.dir, "partial", h)
	start := time.Now()
	err := retry.Do(ctx, retry.Policy{
		Attempts: c.retries + 1, Wait: 500 * time.Millisecond, MaxWait: 2 * time.Second,
		Retryable: func(err error) bool {
			return !errors.Is(err, ErrCorrupt) && !IsNoSpace(err) && !errors.As(err, new(permanent))
		},
		OnRetry: func(err error, attempt int, _ time.Duration) {
			c.log.Warn("image download: resuming", "digest", b.Digest, "attempt", attempt+1, "err", err)
		},
	}, func(int) error { return c.download(ctx, b, partial) })
	if err != nil {
		// A full disk keeps no partial download: it would hold the space
		// other images need, and this one does not fit anyway.
		if errors.Is(err, ErrCorrupt) || IsNoSpace(err) {
			os.Remove(partial)
		}
		return "", fmt.Errorf("fetch %s from %s: %w", b.Digest, b.URL, err)
	}
	if err := verify(partial, h, b.Size); err != nil {
		os.Remove(partial)
		return "", fmt.Errorf("fetch %s from %s: %w", b.Digest, b.URL, err)
	}
	if err := os.Chmod(partial, 0o600); err != nil {
		return "", err
	}
	if err := os.Rename(partial, final); err != nil {
		return "", fmt.Errorf("cache %s: %w", b.Digest, err)
	}
	c.log.Info("image cached", "digest", b.Digest, "took", time.Since(start).Round(time.Millisecond))
	return final, nil
}

// download appends what is missing to partial, resuming with Range. The
// digest is checked by the caller.
func (c *Cache) download(ctx context.Context, b Blob, partial string) error {
	f, err := os.OpenFile(partial, os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	have, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return err
	}
	if b.Size > 0 && have > b.Size {
		return fmt.Errorf("%w: partial download longer than the image", ErrCorrupt)
	}
	if b.Size > 0 && have == b.Size {
		return nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.URL, nil)
	if err != nil {
		return err
	}
	if have > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", have))
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusPartialContent && have > 0:
	case resp.StatusCode == http.StatusOK:
		if err := f.Truncate(0); err != nil {
			return err
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return err
		}
	case resp.StatusCode == http.StatusRequestedRangeNotSatisfiable && have > 0:
		return nil // we have it all; verify decides
	default:
		err := fmt.Errorf("GET %s: %s", b.URL, resp.Status)
		if resp.StatusCode/100 == 4 {
			return permanent{err}
		}
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		return err
	}
	return f.Sync()
}

func verify(path, wantHex string, size int64) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	var h hash.Hash = sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return err
	}
	if size > 0 && n != size {
		return fmt.Errorf("%w: %d bytes, want %d", ErrCorrupt, n, size)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != wantHex {
		return fmt.Errorf("%w: got sha256:%s", ErrCorrupt, got)
	}
	return nil
}

// IsNoSpace reports whether err is the cache's filesystem being full (or
// over quota): retrying does not help until space is freed.
func IsNoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// permanent marks an error that a retry cannot fix (a 4xx answer).
type permanent struct{ error }

func (p permanent) Unwrap() error { return p.error }
