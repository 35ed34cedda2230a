package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"ironbark/internal/atomicfile"
	"ironbark/internal/filelock"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// File names inside the CA directory.
const (
	caCertFile     = "ca.crt"
	caKeyFile      = "ca.key"
	serverCertFile = "server.crt"
	serverKeyFile  = "server.key"
)

// Lifetimes.
const (
	caLifetime     = 20 * 365 * 24 * time.Hour
	serverLifetime = 5 * 365 * 24 * time.Hour
	nodeLifetime   = 5 * 365 * 24 * time.Hour
)

// CA is a certificate authority loaded from a directory.
type CA struct {
	dir  string
	cert *x509.Certificate
	key  crypto.Signer
	pem  []byte
}

// LoadOrCreateCA loads the CA in dir, creating it (and dir, mode 0700) on
// first use. Concurrent callers (the controller and a CLI command on the same
// data dir) agree on one CA: creation runs under a lock file.
func LoadOrCreateCA(dir string) (*CA, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("ca dir: %w", err)
	}
	unlock, err := filelock.Lock(filepath.Join(dir, ".lock"))
	if err != nil {
		return nil, fmt.Errorf("lock ca dir: %w", err)
	}
	defer unlock()
	certPath, keyPath := filepath.Join(dir, caCertFile), filepath.Join(dir, caKeyFile)
	if _, err := os.Stat(certPath); errors.Is(err, os.ErrNotExist) {
		if err := createCA(certPath, keyPath); err != nil {
			return nil, err
		}
	}
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, fmt.Errorf("read ca: %w", err)
	}
	cert, err := ParseCertPEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("ca certificate: %w", err)
	}
	key, err := readKey(keyPath)
	if err != nil {
		return nil, fmt.Errorf("ca key: %w", err)
	}
	return &CA{dir: dir, cert: cert, key: key, pem: certPEM}, nil
}

func createCA(certPath, keyPath string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	host, _ := os.Hostname()
	tmpl := &x509.Certificate{
		SerialNumber:          newSerial(),
		Subject:               pkix.Name{CommonName: "ironbark CA " + host, Organization: []string{"ironbark"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(caLifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return fmt.Errorf("create ca: %w", err)
	}
	if err := writeKey(keyPath, key); err != nil {
		return err
	}
	return atomicfile.Write(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
}

// Cert is the CA certificate.
func (ca *CA) Cert() *x509.Certificate { return ca.cert }

// CertPEM is the CA certificate, PEM encoded.
func (ca *CA) CertPEM() []byte { return ca.pem }

// Pool is a cert pool holding only the CA.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

// Fingerprint is the SHA-256 of the CA's public key (SubjectPublicKeyInfo),
// hex encoded. Enrollment tokens carry it so a node can trust the controller
// before it has the CA certificate.
func (ca *CA) Fingerprint() string { return Fingerprint(ca.cert) }

// Fingerprint is the hex SHA-256 of a certificate's SubjectPublicKeyInfo.
func Fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return hex.EncodeToString(sum[:])
}

// ServerCertificate returns the node listener's certificate, issuing it (and
// keeping it in the CA dir) on first use or when hosts names an address or
// name the current one lacks. localhost, 127.0.0.1, ::1 and the machine's
// host name are always included.
func (ca *CA) ServerCertificate(hosts []string) (tls.Certificate, error) {
	unlock, err := filelock.Lock(filepath.Join(ca.dir, ".lock"))
	if err != nil {
		return tls.Certificate{}, err
	}
	defer unlock()
	want := serverNames(hosts)
	certPath, keyPath := filepath.Join(ca.dir, serverCertFile), filepath.Join(ca.dir, serverKeyFile)
	if c, err := tls.LoadX509KeyPair(certPath, keyPath); err == nil {
		if leaf, err := x509.ParseCertificate(c.Certificate[0]); err == nil && covers(leaf, want) &&
			time.Until(leaf.NotAfter) > 30*24*time.Hour && leaf.CheckSignatureFrom(ca.cert) == nil {
			return c, nil
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: newSerial(),
		Subject:      pkix.Name{CommonName: "ironbark controller", Organization: []string{"ironbark"}},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(serverLifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range want {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("issue server certificate: %w", err)
	}
	if err := writeKey(keyPath, key); err != nil {
		return tls.Certificate{}, err
	}
	if err := atomicfile.Write(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		return tls.Certificate{}, err
	}
	return tls.LoadX509KeyPair(certPath, keyPath)
}

func serverNames(extra []string) []string {
	names := []string{"localhost", "127.0.0.1", "::1"}
	if h, err := os.Hostname(); err == nil && h != "" {
		names = append(names, h)
	}
	seen := map[string]bool{}
	var out []string
	for _, n := range append(names, extra...) {
		if n != "" && !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	return out
}

func covers(c *x509.Certificate, names []string) bool {
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			found := false
			for _, a := range c.IPAddresses {
				found = found || a.Equal(ip)
			}
			if !found {
				return false
			}
		} else if c.VerifyHostname(n) != nil {
			return false
		}
	}
	return true
}

// ErrBadCSR is returned by SignNode when the request is not a valid,
// self-signed certificate request: the caller's fault, not the CA's.
var ErrBadCSR = errors.New("bad certificate request")

// SignNode issues a client certificate for a node from its CSR. The
// certificate's CommonName is nodeID and its serial is returned in hex so the
// caller can record (and later refuse) it.
func (ca *CA) SignNode(csrPEM []byte, nodeID string) (certPEM []byte, serial string, err error) {
	b, _ := pem.Decode(csrPEM)
	if b == nil || b.Type != "CERTIFICATE REQUEST" {
		return nil, "", fmt.Errorf("%w: no CERTIFICATE REQUEST block", ErrBadCSR)
	}
	csr, err := x509.ParseCertificateRequest(b.Bytes)
	if err != nil {
		return nil, "", fmt.Errorf("%w: %w", ErrBadCSR, err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, "", fmt.Errorf("%w: signature: %w", ErrBadCSR, err)
	}
	sn := newSerial()
	tmpl := &x509.Certificate{
		SerialNumber: sn,
		Subject:      pkix.Name{CommonName: nodeID, Organization: []string{"ironbark node"}},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(nodeLifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, csr.PublicKey, ca.key)
	if err != nil {
		return nil, "", fmt.Errorf("sign node certificate: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), SerialHex(sn), nil
}

// SerialHex formats a certificate serial the way the node table stores it.
func SerialHex(sn *big.Int) string { return strings.ToLower(sn.Text(16)) }

// ServerTLS is the node listener's TLS config: client certificates are
// verified against the CA when given (enrollment is the one call without
// one; the handler insists on a certificate everywhere else).
func (ca *CA) ServerTLS(cert tls.Certificate) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    ca.Pool(),
	}
}

// NewKey makes a node's private key.
func NewKey() (*ecdsa.PrivateKey, error) { return ecdsa.GenerateKey(elliptic.P256(), rand.Reader) }

// CSR makes a certificate request for key, with the host name as CN (the
// controller replaces it with the node ID).
func CSR(key crypto.Signer, hostname string) ([]byte, error) {
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: hostname},
	}, key)
	if err != nil {
		return nil, fmt.Errorf("create csr: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), nil
}

// KeyPEM encodes a private key.
func KeyPEM(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// ParseCertPEM parses the first certificate in a PEM block.
func ParseCertPEM(b []byte) (*x509.Certificate, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, errors.New("no CERTIFICATE block")
	}
	return x509.ParseCertificate(blk.Bytes)
}

// VerifyServer checks a server's chain against roots and the server-auth
// usage, ignoring the host name (see the package comment).
func VerifyServer(roots *x509.CertPool, rawCerts [][]byte) error {
	if len(rawCerts) == 0 {
		return errors.New("server sent no certificate")
	}
	certs := make([]*x509.Certificate, len(rawCerts))
	for i, raw := range rawCerts {
		c, err := x509.ParseCertificate(raw)
		if err != nil {
			return fmt.Errorf("server certificate: %w", err)
		}
		certs[i] = c
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	_, err := certs[0].Verify(x509.VerifyOptions{
		Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	if err != nil {
		return fmt.Errorf("verify controller certificate: %w", err)
	}
	return nil
}

// ClientTLS is a node agent's TLS config once enrolled: its own certificate,
// and the controller verified against the CA.
func ClientTLS(cert tls.Certificate, caPEM []byte) (*tls.Config, error) {
	ca, err := ParseCertPEM(caPEM)
	if err != nil {
		return nil, fmt.Errorf("ca certificate: %w", err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		Certificates:       []tls.Certificate{cert},
		InsecureSkipVerify: true, // replaced by VerifyConnection: chain to our CA, any host name
		VerifyConnection: func(cs tls.ConnectionState) error {
			raw := make([][]byte, len(cs.PeerCertificates))
			for i, c := range cs.PeerCertificates {
				raw[i] = c.Raw
			}
			return VerifyServer(roots, raw)
		},
	}, nil
}

// PinnedTLS is the enrollment TLS config: the node does not have the CA yet,
// only its fingerprint from the token. The server's chain must end in a CA
// certificate (sent by the server) whose key has that fingerprint.
func PinnedTLS(fingerprint string) *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		InsecureSkipVerify: true, // replaced by VerifyConnection: pinned CA
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) < 2 {
				return errors.New("controller sent no CA certificate to check against the token")
			}
			for _, c := range cs.PeerCertificates[1:] {
				if c.IsCA && Fingerprint(c) == strings.ToLower(fingerprint) {
					roots := x509.NewCertPool()
					roots.AddCert(c)
					raw := [][]byte{cs.PeerCertificates[0].Raw}
					return VerifyServer(roots, raw)
				}
			}
			return errors.New("controller certificate is not signed by the CA the token names")
		},
	}
}

// ServerChain appends the CA certificate to a server certificate so that
// enrolling nodes can check it against the pinned fingerprint.
func (ca *CA) ServerChain(c tls.Certificate) tls.Certificate {
	c.Certificate = append(c.Certificate[:len(c.Certificate):len(c.Certificate)], ca.cert.Raw)
	return c
}

func newSerial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	return n.Add(n, big.NewInt(1))
}

func writeKey(path string, key *ecdsa.PrivateKey) error {
	b, err := KeyPEM(key)
	if err != nil {
		return err
	}
	return atomicfile.Write(path, b, 0o600)
}

func readKey(path string) (crypto.Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, errors.New("no PEM block")
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, err
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, errors.New("key cannot sign")
	}
	return s, nil
}
