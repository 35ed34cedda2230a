package pki

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
)

func TestCAPersistsAndSigns(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	ca, err := LoadOrCreateCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	again, err := LoadOrCreateCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	if ca.Fingerprint() != again.Fingerprint() {
		t.Fatal("a second load made a new CA")
	}
	if fi, err := os.Stat(filepath.Join(dir, caKeyFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("ca key mode: %v %v", fi.Mode(), err)
	}

	srv, err := ca.ServerCertificate([]string{"10.1.0.1", "frontend.example"})
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(srv.Certificate[0])
	if err := leaf.VerifyHostname("10.1.0.1"); err != nil {
		t.Fatal(err)
	}
	srv2, _ := ca.ServerCertificate([]string{"10.1.0.1"})
	if string(srv2.Certificate[0]) != string(srv.Certificate[0]) {
		t.Fatal("server certificate reissued although it covers the names")
	}

	key, _ := NewKey()
	csr, _ := CSR(key, "compute-0-0")
	certPEM, serial, err := ca.SignNode(csr, "node-1")
	if err != nil {
		t.Fatal(err)
	}
	c, _ := ParseCertPEM(certPEM)
	if c.Subject.CommonName != "node-1" || SerialHex(c.SerialNumber) != serial {
		t.Fatalf("node cert CN %q serial %s/%s", c.Subject.CommonName, SerialHex(c.SerialNumber), serial)
	}
	// Client-auth only: a node certificate cannot pose as the controller.
	if err := VerifyServer(ca.Pool(), [][]byte{c.Raw}); err == nil {
		t.Fatal("a node certificate passed as a server certificate")
	}
	if err := VerifyServer(ca.Pool(), [][]byte{srv.Certificate[0]}); err != nil {
		t.Fatal(err)
	}
	// Another CA's server is refused.
	other, _ := LoadOrCreateCA(filepath.Join(t.TempDir(), "other"))
	osrv, _ := other.ServerCertificate(nil)
	if err := VerifyServer(ca.Pool(), [][]byte{osrv.Certificate[0]}); err == nil {
		t.Fatal("foreign server certificate accepted")
	}
	if _, _, err := ca.SignNode([]byte("not a csr"), "x"); err == nil {
		t.Fatal("garbage CSR signed")
	}
	kp, _ := KeyPEM(key)
	if _, err := tls.X509KeyPair(certPEM, kp); err != nil {
		t.Fatal(err)
	}
}
