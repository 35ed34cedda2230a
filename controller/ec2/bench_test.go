package ec2

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

type tag struct {
	Key   string `xml:"key"`
	Value string `xml:"value"`
}

type keyPair struct {
	ID          string    `xml:"keyPairId"`
	Name        string    `xml:"keyName"`
	Fingerprint string    `xml:"keyFingerprint"`
	Type        string    `xml:"keyType"`
	Created     Time      `xml:"createTime"`
	Tags        List[tag] `xml:"tagSet,omitempty"`
}

type describeKeyPairsResponse struct {
	ResponseMeta
	KeyPairs List[keyPair] `xml:"keySet"`
}

func keyPairsResponse(n int) *describeKeyPairsResponse {
	r := &describeKeyPairsResponse{KeyPairs: make([]keyPair, n)}
	for i := range r.KeyPairs {
		r.KeyPairs[i] = keyPair{
			ID:          fmt.Sprintf("key-%017x", i),
			Name:        fmt.Sprintf("key-%d", i),
			Fingerprint: "1f:51:ae:28:bf:89:e9:d8:1f:25:5d:37:2d:7d:b8:ca:9f:f5:f1:6f",
			Type:        "rsa",
			Created:     TimeOf(testClock.Add(time.Duration(i) * time.Millisecond)),
			Tags:        List[tag]{{Key: "Name", Value: fmt.Sprintf("k%d", i)}},
		}
	}
	return r
}

// staticXML answers every request with body, as an EC2 endpoint would.
func staticXML(body []byte) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		writeXML(w, http.StatusOK, body, "00000000-0000-4000-8000-000000000000")
	})
}

type benchHandler struct{ resp *describeKeyPairsResponse }

func (h *benchHandler) ServeEC2(_ context.Context, r *Request) (any, error) {
	if _, err := r.Query().Filters(); err != nil {
		return nil, err
	}
	c := *h.resp // a fresh ResponseMeta per request; the list is shared read-only
	return &c, nil
}

// BenchmarkRequestPath is one request through the whole wire layer on a
// recorder: read and parse a SigV4-signed form POST, verify the signature
// (key derivation included), run a handler that answers 1,000 items, and
// marshal them.
func BenchmarkRequestPath(b *testing.B) {
	h := &benchHandler{resp: keyPairsResponse(1000)}
	srv := NewServer(Config{Handler: h, Credentials: testCreds{}, Logger: slog.New(slog.DiscardHandler), Now: fixed(testClock)})
	params := url.Values{"Action": {"DescribeKeyPairs"}, "Version": {"2016-11-15"}, "Filter.1.Name": {"key-type"}, "Filter.1.Value.1": {"rsa"}}
	signed := signV4(b, newQuery(http.MethodPost, "http://127.0.0.1:8773/", params), testAK, testSecret, testClock, "us-east-1", "ec2")
	body := params.Encode()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r := signed.Clone(signed.Context())
		r.Body = io.NopCloser(strings.NewReader(body))
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, r)
		if rec.Code != http.StatusOK {
			b.Fatalf("%d %s", rec.Code, rec.Body)
		}
	}
}

// BenchmarkVerifySigV4 is parse + verify alone, for a small request.
func BenchmarkVerifySigV4(b *testing.B) {
	params := url.Values{"Action": {"DescribeInstances"}, "Version": {"2016-11-15"}, "InstanceId.1": {"i-0123456789abcdef0"}}
	r := signV4(b, newQuery(http.MethodPost, "http://127.0.0.1:8773/", params), testAK, testSecret, testClock, "us-east-1", "ec2")
	w := newWireRequest(r, []byte(params.Encode()))
	in := verifyInput{Secret: testSecret, Now: testClock, Skew: DefaultClockSkew}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		q, err := parseQuery(w)
		if err != nil {
			b.Fatal(err)
		}
		sig, err := parseSignature(w, q)
		if err != nil {
			b.Fatal(err)
		}
		if err := sig.verify(w, q, in); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMarshal1000 is the marshalling of a 1,000-item answer alone.
func BenchmarkMarshal1000(b *testing.B) {
	resp := keyPairsResponse(1000)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := MarshalResponse("DescribeKeyPairs", "http://ec2.amazonaws.com/doc/2016-11-15/", "id", resp); err != nil {
			b.Fatal(err)
		}
	}
}
