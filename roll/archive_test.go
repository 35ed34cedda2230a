package roll

import (
	"archive/tar"
	"bytes"
	"crypto/ed25519"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func newKey(t *testing.T) (ed25519.PrivateKey, ed25519.PublicKey, string) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "roll.key")
	pub, err := GenerateKey(p)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ReadPrivateKey(p)
	if err != nil {
		t.Fatal(err)
	}
	if !pub.Equal(key.Public()) {
		t.Fatal("public key file does not match the private key")
	}
	return key, pub, p
}

// rewriteTar copies an archive, passing each entry's content through f.
func rewriteTar(t *testing.T, in, out string, f func(name string, b []byte) []byte) {
	t.Helper()
	data, err := os.ReadFile(in)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(bytes.NewReader(data))
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		b = f(h.Name, b)
		if b == nil {
			continue
		}
		h.Size = int64(len(b))
		tw.WriteHeader(h)
		tw.Write(b)
	}
	tw.Close()
	if err := os.WriteFile(out, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestArchiveSignVerify(t *testing.T) {
	key, pub, _ := newKey(t)
	_, other, _ := newKey(t)
	dir := t.TempDir()
	src := filepath.Join("testdata", "rolls", "base")
	signed := filepath.Join(dir, "base.tar")
	if _, err := Create(src, signed, key); err != nil {
		t.Fatal(err)
	}
	// Deterministic: the same roll and key give the same bytes.
	again := filepath.Join(dir, "again.tar")
	if _, err := Create(src, again, key); err != nil {
		t.Fatal(err)
	}
	a1, _ := os.ReadFile(signed)
	a2, _ := os.ReadFile(again)
	if !bytes.Equal(a1, a2) {
		t.Error("two archives of one roll differ")
	}

	r, a, err := OpenVerified(signed, []ed25519.PublicKey{other, pub}, false)
	if err != nil {
		t.Fatal(err)
	}
	if r.Name != "base" || a.Sig.KeyID != KeyID(pub) {
		t.Errorf("roll %s signed by %s", r.Name, a.Sig.KeyID)
	}
	// The archive's roll walks like the directory's.
	g, err := Merge(r)
	if err != nil {
		t.Fatal(err)
	}
	p, err := g.Profile("compute", nil)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "profile-compute.txt", profileText(p))

	// A roll signed by a key the frontend does not trust.
	if _, _, err := OpenVerified(signed, []ed25519.PublicKey{other}, false); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("unknown key: %v", err)
	}
	// Unsigned.
	unsigned := filepath.Join(dir, "unsigned.tar")
	if _, err := Create(src, unsigned, nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := OpenVerified(unsigned, []ed25519.PublicKey{pub}, false); !errors.Is(err, ErrUnsigned) {
		t.Errorf("unsigned: %v", err)
	}
	if _, _, err := OpenVerified(unsigned, nil, true); err != nil {
		t.Errorf("unsigned with insecure trust: %v", err)
	}

	// A file changed after signing: refused, naming the file.
	tampered := filepath.Join(dir, "tampered.tar")
	rewriteTar(t, signed, tampered, func(name string, b []byte) []byte {
		if name == "nodes/ssh.xml" {
			return bytes.Replace(b, []byte("prohibit-password"), []byte("yes"), 1)
		}
		return b
	})
	_, _, err = OpenVerified(tampered, []ed25519.PublicKey{pub}, false)
	if !errors.Is(err, ErrTampered) || !strings.Contains(err.Error(), "nodes/ssh.xml") {
		t.Errorf("tampered file: %v", err)
	}
	// Even --insecure-trust refuses a file that does not match the list.
	if _, _, err := OpenVerified(tampered, nil, true); !errors.Is(err, ErrTampered) {
		t.Errorf("tampered file, insecure: %v", err)
	}
	// The file and the list changed together: the signature fails.
	relisted := filepath.Join(dir, "relisted.tar")
	var newSums []byte
	rewriteTar(t, tampered, relisted, func(name string, b []byte) []byte {
		if name == SumsFile {
			a, _ := ReadArchive(tampered)
			newSums, _ = archiveBytes(a.Files, nil)
			ar, _ := parseArchive(newSums)
			return ar.Sums
		}
		return b
	})
	_, _, err = OpenVerified(relisted, []ed25519.PublicKey{pub}, false)
	if !errors.Is(err, ErrBadSignature) || !strings.Contains(err.Error(), SigFile) {
		t.Errorf("relisted: %v", err)
	}
	// A file added to the archive.
	added := filepath.Join(dir, "added.tar")
	rewriteTar(t, signed, added, func(name string, b []byte) []byte { return b })
	f, _ := os.ReadFile(added)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "nodes/evil.xml", Mode: 0o644, Size: 12, Typeflag: tar.TypeReg})
	tw.Write([]byte("<kickstart/>"))
	tw.Close()
	os.WriteFile(added, append(f[:len(f)-1024], buf.Bytes()...), 0o644)
	_, _, err = OpenVerified(added, []ed25519.PublicKey{pub}, false)
	if !errors.Is(err, ErrTampered) || !strings.Contains(err.Error(), "nodes/evil.xml") {
		t.Errorf("added file: %v", err)
	}
}

func TestTrustedKeys(t *testing.T) {
	_, pub, priv := newKey(t)
	dir := filepath.Join(t.TempDir(), "keys")
	keys, err := TrustedKeys(dir)
	if err != nil || len(keys) != 0 {
		t.Fatalf("no dir: %v %v", keys, err)
	}
	id, err := Trust(dir, priv+".pub")
	if err != nil {
		t.Fatal(err)
	}
	if id != KeyID(pub) {
		t.Errorf("id %s, want %s", id, KeyID(pub))
	}
	keys, err = TrustedKeys(dir)
	if err != nil || len(keys) != 1 || !keys[0].Equal(pub) {
		t.Fatalf("keys %v %v", keys, err)
	}
	if _, err := Trust(dir, priv); err == nil {
		t.Error("trusted a private key file as a public key")
	}
	if _, err := GenerateKey(priv); err == nil {
		t.Error("GenerateKey overwrote a key")
	}
}

func TestArchiveRefusesUnsafeEntries(t *testing.T) {
	for name, hdr := range map[string]*tar.Header{
		"dotdot":  {Name: "../x", Typeflag: tar.TypeReg},
		"abs":     {Name: "/etc/passwd", Typeflag: tar.TypeReg},
		"symlink": {Name: "files/x", Typeflag: tar.TypeSymlink, Linkname: "/etc/shadow"},
	} {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		tw.WriteHeader(hdr)
		tw.Close()
		if _, err := parseArchive(buf.Bytes()); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
