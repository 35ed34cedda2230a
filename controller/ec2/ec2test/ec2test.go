// Package ec2test helps tests drive an EC2 endpoint the way real clients
// do: an aws-sdk-go-v2 EC2 client aimed at a test listener, and a
// Signature V2 signer (euca2ools, boto2 and the Perl clients still sign
// that way; no SDK does any more).
package ec2test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"hash"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
)

// Client is an aws-sdk-go-v2 EC2 client for endpoint (e.g. an
// httptest.Server's URL, with or without /services/compute), signing with
// the given key, region "ironbark", one attempt (no retries hide errors).
//
// Its HTTP transport buffers request bodies: smithy-go closes the request
// body as soon as response headers arrive, racing net/http's writer,
// which then closes the connection under a response still being read
// ("use of closed network connection", aws/aws-sdk-go-v2#2737). On
// loopback that hits about every other answer of a few hundred
// kilobytes; the SDK's default retryer papers over it in real use.
func Client(endpoint, accessKey, secretKey string) *ec2.Client {
	return ClientCA(endpoint, accessKey, secretKey, nil)
}

// ClientCA is Client for an HTTPS endpoint whose certificate the CA in
// caPEM issued (the cloud's CA, as AWS_CA_BUNDLE names it); nil caPEM
// trusts the system's roots.
func ClientCA(endpoint, accessKey, secretKey string, caPEM []byte) *ec2.Client {
	var next http.RoundTripper = http.DefaultTransport
	if caPEM != nil {
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(caPEM)
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = &tls.Config{RootCAs: pool}
		next = tr
	}
	cfg := aws.Config{
		Region:           "ironbark",
		Credentials:      credentials.NewStaticCredentialsProvider(accessKey, secretKey, ""),
		RetryMaxAttempts: 1,
		HTTPClient:       &http.Client{Transport: BufferingTransport{Next: next}},
	}
	return ec2.NewFromConfig(cfg, func(o *ec2.Options) { o.BaseEndpoint = aws.String(endpoint) })
}

// BufferingTransport reads each request body into memory before sending
// it, so that nothing the caller does to the body afterwards can disturb
// the connection.
type BufferingTransport struct{ Next http.RoundTripper }

// RoundTrip sends r with a body of its own.
func (t BufferingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil && r.Body != http.NoBody {
		data, err := io.ReadAll(r.Body)
		_ = r.Body.Close()
		if err != nil {
			return nil, err
		}
		r = r.Clone(r.Context())
		r.Body = io.NopCloser(bytes.NewReader(data))
		r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil }
		r.ContentLength = int64(len(data))
	}
	return t.Next.RoundTrip(r)
}

// SignV2 returns params plus the Signature V2 fields (AWSAccessKeyId,
// SignatureVersion=2, SignatureMethod, Timestamp or Expires, Signature),
// signed for method, host (as the client signs it: boto2 leaves the port
// out) and path. alg is "HmacSHA256" or "HmacSHA1". Send the result as a
// form body (POST) or as the query string (GET).
func SignV2(params url.Values, method, host, path, accessKey, secretKey, alg string, at time.Time, expires bool) url.Values {
	p := url.Values{}
	for k, v := range params {
		p[k] = append([]string(nil), v...)
	}
	p.Set("AWSAccessKeyId", accessKey)
	p.Set("SignatureVersion", "2")
	p.Set("SignatureMethod", alg)
	p.Del("Signature")
	if expires {
		p.Set("Expires", at.UTC().Format("2006-01-02T15:04:05Z"))
	} else {
		p.Set("Timestamp", at.UTC().Format("2006-01-02T15:04:05.000Z"))
	}
	keys := make([]string, 0, len(p))
	for k := range p {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var pairs []string
	for _, k := range keys {
		vs := append([]string(nil), p[k]...)
		sort.Strings(vs)
		for _, v := range vs {
			pairs = append(pairs, rfc3986(k)+"="+rfc3986(v))
		}
	}
	if path == "" {
		path = "/"
	}
	sts := method + "\n" + strings.ToLower(host) + "\n" + path + "\n" + strings.Join(pairs, "&")
	var h func() hash.Hash = sha256.New
	if alg == "HmacSHA1" {
		h = sha1.New
	}
	m := hmac.New(h, []byte(secretKey))
	m.Write([]byte(sts))
	p.Set("Signature", base64.StdEncoding.EncodeToString(m.Sum(nil)))
	return p
}

// rfc3986 is url.QueryEscape with Signature V2's rules: space as %20 and
// '~' left alone (QueryEscape already keeps '-', '_', '.' and
// alphanumerics, and escapes everything else, '*' included).
func rfc3986(s string) string {
	return strings.NewReplacer("+", "%20", "%7E", "~").Replace(url.QueryEscape(s))
}

// Post sends body, exactly as given, as a form-encoded POST to endpoint,
// signed with Signature V4 (aws-sdk-go-v2's signer) for service and region
// "ironbark", and returns the status and the answer's body. It is for
// wire tests that must send the bytes a particular client sends.
func Post(ctx context.Context, endpoint, accessKey, secretKey, service, body string) (int, []byte, error) {
	r, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
	sum := sha256.Sum256([]byte(body))
	err = v4.NewSigner().SignHTTP(ctx, aws.Credentials{AccessKeyID: accessKey, SecretAccessKey: secretKey},
		r, hex.EncodeToString(sum[:]), service, "ironbark", time.Now())
	if err != nil {
		return 0, nil, err
	}
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}
