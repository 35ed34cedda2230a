package roll

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sort"
	"strings"
	"time"

	"ironbark/internal/atomicfile"
)

// The two files a roll archive carries besides the roll: the SHA-256 of
// every other file, and the ed25519 signature of that list.
const (
	SumsFile = "SHA256SUMS"
	SigFile  = "SHA256SUMS.sig"
)

// sigDomain prefixes the signed bytes so a roll signature can never be
// mistaken for a signature over anything else.
const sigDomain = "ironbark roll signature v1\n"

// Archive is a roll archive read into memory: the roll's files, the
// checksum list, and the signature if there is one.
type Archive struct {
	Path  string
	Files map[string][]byte // the roll's files, without SHA256SUMS and its signature
	Sums  []byte
	Sig   *Signature
	// Digest is the SHA-256 of the archive file itself.
	Digest string
}

// Signature is SHA256SUMS.sig: which key signed, and the signature.
type Signature struct {
	KeyID string
	Sig   []byte
}

// Errors from Verify (wrapped, with the file that failed).
var (
	ErrUnsigned     = errors.New("roll is not signed")
	ErrUnknownKey   = errors.New("roll is signed by a key this frontend does not trust")
	ErrBadSignature = errors.New("signature does not verify")
	ErrTampered     = errors.New("file does not match the signed checksums")
)

// Create writes the roll in dir as an archive at out: a tar with its
// entries sorted, owned by 0:0, dated 1970, so the same roll gives the same
// bytes. The roll is read and checked first: a roll that does not load is
// not archived. With key non-nil the archive is signed.
func Create(dir, out string, key ed25519.PrivateKey) (*Roll, error) {
	files, err := readTree(os.DirFS(dir))
	if err != nil {
		return nil, fmt.Errorf("create roll from %s: %w", dir, err)
	}
	delete(files, SumsFile)
	delete(files, SigFile)
	r, err := fromFiles(dir, files)
	if err != nil {
		return nil, err
	}
	data, err := archiveBytes(files, key)
	if err != nil {
		return nil, fmt.Errorf("create roll %s: %w", r.Name, err)
	}
	if err := atomicfile.Write(out, data, 0o644); err != nil {
		return nil, fmt.Errorf("create roll %s: %w", r.Name, err)
	}
	return r, nil
}

func archiveBytes(files map[string][]byte, key ed25519.PrivateKey) ([]byte, error) {
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	var sums bytes.Buffer
	for _, n := range names {
		h := sha256.Sum256(files[n])
		fmt.Fprintf(&sums, "%x  %s\n", h, n)
	}
	all := map[string][]byte{SumsFile: sums.Bytes()}
	order := append([]string(nil), names...)
	order = append(order, SumsFile)
	if key != nil {
		all[SigFile] = Sign(key, sums.Bytes())
		order = append(order, SigFile)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	epoch := time.Unix(0, 0).UTC()
	for _, n := range order {
		b, ok := all[n]
		if !ok {
			b = files[n]
		}
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: n, Size: int64(len(b)), Mode: 0o644,
			ModTime: epoch, Format: tar.FormatPAX}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if _, err := tw.Write(b); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// ReadArchive reads a roll archive (tar, or gzip'ed tar) into memory. It
// refuses links, devices, duplicate and unsafe paths; it does not verify
// the signature (Verify does).
func ReadArchive(p string) (*Archive, error) {
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("read roll archive: %w", err)
	}
	a, err := parseArchive(data)
	if err != nil {
		return nil, fmt.Errorf("roll archive %s: %w", p, err)
	}
	a.Path = p
	return a, nil
}

func parseArchive(data []byte) (*Archive, error) {
	h := sha256.Sum256(data)
	a := &Archive{Files: map[string][]byte{}, Digest: hex.EncodeToString(h[:])}
	var r io.Reader = bytes.NewReader(data)
	if len(data) > 2 && data[0] == 0x1f && data[1] == 0x8b {
		zr, err := gzip.NewReader(r)
		if err != nil {
			return nil, err
		}
		r = io.LimitReader(zr, maxRollBytes*2)
	}
	tr := tar.NewReader(r)
	total := 0
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		name := strings.TrimPrefix(hdr.Name, "./")
		switch hdr.Typeflag {
		case tar.TypeDir:
			continue
		case tar.TypeReg:
		default:
			return nil, fmt.Errorf("%s: not a regular file (type %q)", hdr.Name, hdr.Typeflag)
		}
		if !fs.ValidPath(name) || name == "." {
			return nil, fmt.Errorf("%q: unsafe path", hdr.Name)
		}
		if hdr.Size < 0 || hdr.Size > maxRollBytes || total+int(hdr.Size) > maxRollBytes {
			return nil, fmt.Errorf("%s: larger than %d bytes in all", name, maxRollBytes)
		}
		if len(a.Files) >= maxRollFiles {
			return nil, fmt.Errorf("more than %d files", maxRollFiles)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		total += len(b)
		switch name {
		case SumsFile:
			if a.Sums != nil {
				return nil, fmt.Errorf("%s twice", name)
			}
			a.Sums = b
		case SigFile:
			if a.Sig != nil {
				return nil, fmt.Errorf("%s twice", name)
			}
			s, err := parseSignature(b)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			a.Sig = s
		default:
			if _, dup := a.Files[name]; dup {
				return nil, fmt.Errorf("%s: twice in the archive", name)
			}
			a.Files[name] = b
		}
	}
	return a, nil
}

// Sign signs a checksum list with key and returns SHA256SUMS.sig's bytes.
func Sign(key ed25519.PrivateKey, sums []byte) []byte {
	pub := key.Public().(ed25519.PublicKey)
	sig := ed25519.Sign(key, append([]byte(sigDomain), sums...))
	return fmt.Appendf(nil, "ironbark-roll-signature v1\nkey %s\nsig %s\n", KeyID(pub), base64.StdEncoding.EncodeToString(sig))
}

func parseSignature(b []byte) (*Signature, error) {
	s := &Signature{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	line := 0
	for sc.Scan() {
		line++
		t := sc.Text()
		switch {
		case line == 1:
			if t != "ironbark-roll-signature v1" {
				return nil, fmt.Errorf("line 1: not an ironbark roll signature")
			}
		case strings.HasPrefix(t, "key "):
			s.KeyID = strings.TrimPrefix(t, "key ")
		case strings.HasPrefix(t, "sig "):
			sig, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(t, "sig "))
			if err != nil || len(sig) != ed25519.SignatureSize {
				return nil, fmt.Errorf("line %d: bad signature encoding", line)
			}
			s.Sig = sig
		case t == "":
		default:
			return nil, fmt.Errorf("line %d: unexpected %q", line, t)
		}
	}
	if s.KeyID == "" || s.Sig == nil {
		return nil, errors.New("want a key and a sig line")
	}
	return s, nil
}

// Verify checks that the archive is signed by one of keys, that the
// signature covers its checksum list, and that every file matches the
// list and the list names no file the archive lacks. Errors name the file
// that failed.
func (a *Archive) Verify(keys []ed25519.PublicKey) (keyID string, err error) {
	if a.Sig == nil {
		return "", fmt.Errorf("%s: %w (no %s; sign it with roll create --sign, or add it with --insecure-trust)", a.Path, ErrUnsigned, SigFile)
	}
	var key ed25519.PublicKey
	for _, k := range keys {
		if KeyID(k) == a.Sig.KeyID {
			key = k
		}
	}
	if key == nil {
		return "", fmt.Errorf("%s: %s: %w: key %s (trust it with roll key trust, or add the roll with --insecure-trust)", a.Path, SigFile, ErrUnknownKey, a.Sig.KeyID)
	}
	if a.Sums == nil || !ed25519.Verify(key, append([]byte(sigDomain), a.Sums...), a.Sig.Sig) {
		return "", fmt.Errorf("%s: %s: %w over %s: the list was changed after signing", a.Path, SigFile, ErrBadSignature, SumsFile)
	}
	if err := a.CheckSums(); err != nil {
		return "", err
	}
	return a.Sig.KeyID, nil
}

// CheckSums checks the files against SHA256SUMS (which an unsigned archive
// also carries, to catch a damaged copy).
func (a *Archive) CheckSums() error {
	if a.Sums == nil {
		return fmt.Errorf("%s: no %s", a.Path, SumsFile)
	}
	want := map[string]string{}
	for i, l := range strings.Split(strings.TrimSuffix(string(a.Sums), "\n"), "\n") {
		sum, name, ok := strings.Cut(l, "  ")
		if !ok || len(sum) != 64 {
			return fmt.Errorf("%s: %s:%d: malformed line", a.Path, SumsFile, i+1)
		}
		want[name] = sum
	}
	names := make([]string, 0, len(a.Files))
	for n := range a.Files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		s, ok := want[n]
		if !ok {
			return fmt.Errorf("%s: %s: %w: not in %s", a.Path, n, ErrTampered, SumsFile)
		}
		h := sha256.Sum256(a.Files[n])
		if hex.EncodeToString(h[:]) != s {
			return fmt.Errorf("%s: %s: %w: sha256 differs", a.Path, n, ErrTampered)
		}
		delete(want, n)
	}
	for n := range want {
		return fmt.Errorf("%s: %s: %w: listed in %s but missing", a.Path, n, ErrTampered, SumsFile)
	}
	return nil
}

// Roll interprets the archive's files as a roll.
func (a *Archive) Roll() (*Roll, error) { return fromFiles(a.Path, a.Files) }

// OpenVerified reads a roll archive and checks it against the trusted
// keys; insecure skips the signature (the checksums are still checked).
func OpenVerified(p string, keys []ed25519.PublicKey, insecure bool) (*Roll, *Archive, error) {
	a, err := ReadArchive(p)
	if err != nil {
		return nil, nil, err
	}
	if insecure {
		if err := a.CheckSums(); err != nil {
			return nil, nil, err
		}
	} else if _, err := a.Verify(keys); err != nil {
		return nil, nil, err
	}
	r, err := a.Roll()
	if err != nil {
		return nil, nil, err
	}
	return r, a, nil
}
