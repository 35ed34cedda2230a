package blobstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Digest names a blob: "sha256:" followed by 64 lower-case hex digits.
type Digest string

// ErrNotFound is returned for a digest the store does not hold.
var ErrNotFound = errors.New("blob not found")

// ErrDigestMismatch is returned when ingested bytes do not hash to the
// expected digest (a corrupt upload).
var ErrDigestMismatch = errors.New("digest mismatch")

// ErrSizeMismatch is returned when ingested bytes are not the expected
// length (a truncated upload).
var ErrSizeMismatch = errors.New("size mismatch")

// ParseDigest accepts "sha256:<hex>" or a bare 64-digit hex string.
func ParseDigest(s string) (Digest, error) {
	h := strings.TrimPrefix(s, "sha256:")
	if len(h) != 64 {
		return "", fmt.Errorf("digest %q: want sha256:<64 hex digits>", s)
	}
	for _, c := range h {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return "", fmt.Errorf("digest %q: want lower-case hex", s)
		}
	}
	return Digest("sha256:" + h), nil
}

// FromHash returns the digest of a finished sha256 hash.
func FromHash(h hash.Hash) Digest { return Digest("sha256:" + hex.EncodeToString(h.Sum(nil))) }

// Hex returns the hex part of the digest.
func (d Digest) Hex() string { return strings.TrimPrefix(string(d), "sha256:") }

func (d Digest) String() string { return string(d) }

// Store is a blob directory. It is safe for concurrent use by goroutines
// and by several processes on the same directory.
type Store struct {
	dir string // DIR/blobs
}

// Open opens (creating if needed) the store under dir; blobs go to
// dir/blobs/sha256.
func Open(dir string) (*Store, error) {
	s := &Store{dir: filepath.Join(dir, "blobs")}
	for _, d := range []string{s.shaDir(), s.tmpDir()} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("open blob store: %w", err)
		}
	}
	s.removeStaleIngests(24 * time.Hour)
	return s, nil
}

// removeStaleIngests deletes temporary files left by ingests that died
// (a killed process) longer ago than age; younger ones may belong to a
// running ingest in another process.
func (s *Store) removeStaleIngests(age time.Duration) {
	ents, err := os.ReadDir(s.tmpDir())
	if err != nil {
		return
	}
	for _, e := range ents {
		if info, err := e.Info(); err == nil && strings.HasPrefix(e.Name(), "ingest-") && time.Since(info.ModTime()) > age {
			os.Remove(filepath.Join(s.tmpDir(), e.Name()))
		}
	}
}

func (s *Store) shaDir() string { return filepath.Join(s.dir, "sha256") }
func (s *Store) tmpDir() string { return filepath.Join(s.dir, "tmp") }

// Path returns the file of a blob (which may not exist).
func (s *Store) Path(d Digest) string { return filepath.Join(s.shaDir(), d.Hex()) }

// Expect is what the caller knows about a blob before ingesting it. Zero
// fields are not checked.
type Expect struct {
	Digest Digest
	Size   int64 // -1 or 0: unknown
}

// Put ingests r and returns its digest and size.
func (s *Store) Put(ctx context.Context, r io.Reader) (Digest, int64, error) {
	return s.PutExpect(ctx, r, Expect{})
}

// PutExpect ingests r, checking the digest and size in want. On any error
// nothing is left in the store.
func (s *Store) PutExpect(ctx context.Context, r io.Reader, want Expect) (Digest, int64, error) {
	if want.Digest != "" {
		if _, err := ParseDigest(string(want.Digest)); err != nil {
			return "", 0, err
		}
	}
	tmp, err := os.CreateTemp(s.tmpDir(), "ingest-*")
	if err != nil {
		return "", 0, fmt.Errorf("put blob: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	h := sha256.New()
	n, err := io.CopyBuffer(io.MultiWriter(tmp, h), ctxReader{ctx, r}, make([]byte, 1<<20))
	if err != nil {
		return "", n, fmt.Errorf("put blob: after %d bytes: %w", n, err)
	}
	d := FromHash(h)
	if want.Size > 0 && n != want.Size {
		return "", n, fmt.Errorf("put blob: got %d bytes, want %d (truncated upload?): %w", n, want.Size, ErrSizeMismatch)
	}
	if want.Digest != "" && d != want.Digest {
		return "", n, fmt.Errorf("put blob: content is %s, want %s: %w", d, want.Digest, ErrDigestMismatch)
	}
	if err := tmp.Chmod(0o600); err != nil {
		return "", n, fmt.Errorf("put blob: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return "", n, fmt.Errorf("put blob: sync: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return "", n, fmt.Errorf("put blob: %w", err)
	}
	if err := os.Rename(tmp.Name(), s.Path(d)); err != nil {
		return "", n, fmt.Errorf("put blob: %w", err)
	}
	ok = true
	if dir, err := os.Open(s.shaDir()); err == nil {
		_ = dir.Sync() // make the rename durable
		dir.Close()
	}
	return d, n, nil
}

// PutFile ingests a file by path.
func (s *Store) PutFile(ctx context.Context, path string) (Digest, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, fmt.Errorf("put blob: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", 0, fmt.Errorf("put blob: %w", err)
	}
	return s.PutExpect(ctx, f, Expect{Size: st.Size()})
}

// Open opens a blob for reading.
func (s *Store) Open(d Digest) (*os.File, error) {
	if _, err := ParseDigest(string(d)); err != nil {
		return nil, err
	}
	f, err := os.Open(s.Path(d))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", d, ErrNotFound)
	}
	return f, err
}

// Size returns the size of a stored blob.
func (s *Store) Size(d Digest) (int64, error) {
	if _, err := ParseDigest(string(d)); err != nil {
		return 0, err
	}
	st, err := os.Stat(s.Path(d))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, fmt.Errorf("%s: %w", d, ErrNotFound)
	}
	if err != nil {
		return 0, err
	}
	return st.Size(), nil
}

// Delete removes a blob; deleting a missing blob is not an error.
func (s *Store) Delete(d Digest) error {
	if _, err := ParseDigest(string(d)); err != nil {
		return err
	}
	if err := os.Remove(s.Path(d)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("delete blob %s: %w", d, err)
	}
	return nil
}

// List returns the digests held, sorted.
func (s *Store) List() ([]Digest, error) {
	ents, err := os.ReadDir(s.shaDir())
	if err != nil {
		return nil, fmt.Errorf("list blobs: %w", err)
	}
	var out []Digest
	for _, e := range ents {
		if d, err := ParseDigest(e.Name()); err == nil && e.Type().IsRegular() {
			out = append(out, d)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out, nil
}

// Verify re-hashes a stored blob and reports whether it still matches its
// name (bit rot, or someone writing into the store by hand).
func (s *Store) Verify(d Digest) error {
	f, err := s.Open(d)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return fmt.Errorf("verify %s: %w", d, err)
	}
	if got := FromHash(h); got != d {
		return fmt.Errorf("verify %s: content is %s: %w", d, got, ErrDigestMismatch)
	}
	return nil
}

// Handler serves GET and HEAD of /sha256/<hex> (relative to where it is
// mounted: use http.StripPrefix, or HandlerAt). Range, If-None-Match and
// If-Range work through http.ServeContent.
func (s *Store) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		hexPart, ok := strings.CutPrefix(r.URL.Path, "/sha256/")
		if !ok {
			hexPart, ok = strings.CutPrefix(r.URL.Path, "sha256/")
		}
		d, err := ParseDigest(hexPart)
		if !ok || err != nil {
			http.Error(w, "want /sha256/<64 hex digits>", http.StatusNotFound)
			return
		}
		f, err := s.Open(d)
		if err != nil {
			if errors.Is(err, ErrNotFound) {
				http.Error(w, "no such blob", http.StatusNotFound)
				return
			}
			http.Error(w, "blob store error", http.StatusInternalServerError)
			return
		}
		defer f.Close()
		st, err := f.Stat()
		if err != nil {
			http.Error(w, "blob store error", http.StatusInternalServerError)
			return
		}
		etag := `"` + string(d) + `"`
		h := w.Header()
		h.Set("ETag", etag)
		h.Set("Content-Type", "application/octet-stream")
		h.Set("Cache-Control", "public, max-age=31536000, immutable")
		h.Set("X-Content-Digest", string(d))
		if rg := r.Header.Get("Range"); rg != "" && (r.Header.Get("If-Range") == "" || r.Header.Get("If-Range") == etag) {
			rest, ok := dropEmptySuffixes(rg)
			if !ok {
				h.Set("Content-Range", fmt.Sprintf("bytes */%d", st.Size()))
				http.Error(w, "range not satisfiable", http.StatusRequestedRangeNotSatisfiable)
				return
			}
			if rest != rg {
				r = r.Clone(r.Context())
				r.Header.Set("Range", rest)
			}
		}
		// w and f go to ServeContent unwrapped: its copy then reaches
		// the TCP connection's ReadFrom with the file, which sends it
		// with sendfile(2). Wrapping either (a counting writer, a hashing
		// reader) turns every stream into read/write copies.
		http.ServeContent(w, r, "", st.ModTime(), f)
	})
}

// dropEmptySuffixes removes the zero-length suffix ranges ("-0") from a
// Range header. RFC 9110 calls them unsatisfiable, and net/http answers
// one with 206 and an impossible Content-Range ("bytes N-(N-1)/N"). It
// returns the header without them and false when nothing satisfiable
// might be left (only "-0"s: 416, as nginx answers). Headers that are not
// bytes= ranges come back unchanged, for ServeContent to judge.
func dropEmptySuffixes(rg string) (string, bool) {
	spec, ok := strings.CutPrefix(rg, "bytes=")
	if !ok {
		return rg, true
	}
	var keep []string
	dropped := false
	for _, part := range strings.Split(spec, ",") {
		if n, ok := strings.CutPrefix(strings.TrimSpace(part), "-"); ok && n != "" && strings.Trim(n, "0") == "" {
			dropped = true
			continue
		}
		keep = append(keep, part)
	}
	if !dropped {
		return rg, true
	}
	if len(keep) == 0 {
		return "", false
	}
	return "bytes=" + strings.Join(keep, ","), true
}

// HandlerAt mounts Handler under prefix, e.g. HandlerAt("/blobs") serves
// /blobs/sha256/<hex>.
func (s *Store) HandlerAt(prefix string) http.Handler {
	return http.StripPrefix(strings.TrimSuffix(prefix, "/"), s.Handler())
}

// URLPath returns the path of a blob under a mount prefix:
// URLPath("/blobs", d) = "/blobs/sha256/<hex>".
func URLPath(prefix string, d Digest) string {
	return strings.TrimSuffix(prefix, "/") + "/sha256/" + d.Hex()
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
