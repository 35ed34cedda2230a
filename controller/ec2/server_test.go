package ec2

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"ironbark/controller/ec2/ec2test"
	"ironbark/internal/lab"
)

const (
	testAK     = "AKIAIRONBARKTEST0001"
	testSecret = "s3cr3t/+kEy+with+slashes/0123456789abcd"
	testAcct   = "000000000001"
)

// testClock is the fixed "now" of the table tests.
var testClock = time.Date(2026, 11, 24, 20, 45, 42, 0, time.UTC)

type testCreds struct{}

func (testCreds) LookupAccessKey(_ context.Context, ak string) (string, Principal, error) {
	switch ak {
	case testAK:
		return testSecret, Principal{AccountID: testAcct}, nil
	case "AKIABROKENSTORE00001":
		return "", Principal{}, errors.New("database is on fire")
	}
	return "", Principal{}, ErrUnknownAccessKey
}

type region struct {
	Name        string `xml:"regionName"`
	Endpoint    string `xml:"regionEndpoint"`
	OptInStatus string `xml:"optInStatus"`
}

type describeRegionsResponse struct {
	ResponseMeta
	Regions List[region] `xml:"regionInfo"`
}

type thing struct {
	ID      string `xml:"thingId"`
	Count   int    `xml:"count"`
	Created Time   `xml:"createTime"`
}

type describeThingsResponse struct {
	ResponseMeta
	Things    List[thing] `xml:"thingSet"`
	NextToken string      `xml:"nextToken,omitempty"`
}

// testHandler is a tiny EC2: DescribeRegions, DescribeThings (n items,
// paginated), and actions that misbehave.
type testHandler struct {
	mu   sync.Mutex
	last *Request
}

func (h *testHandler) ServeEC2(_ context.Context, r *Request) (any, error) {
	h.mu.Lock()
	h.last = r
	h.mu.Unlock()
	p := r.Query()
	switch r.Action {
	case "DescribeRegions":
		names, err := p.Strings("RegionName")
		if err != nil {
			return nil, err
		}
		fs, err := p.Filters()
		if err != nil {
			return nil, err
		}
		if err := fs.Check("region-name", "endpoint"); err != nil {
			return nil, err
		}
		resp := &describeRegionsResponse{}
		for _, n := range []string{"ironbark", "ironbark-west"} {
			if len(names) > 0 && !contains(names, n) {
				continue
			}
			rg := region{Name: n, Endpoint: "ec2." + n + ".example", OptInStatus: "opt-in-not-required"}
			if fs.Matches(func(f string) []string {
				if f == "region-name" {
					return []string{rg.Name}
				}
				return []string{rg.Endpoint}
			}) {
				resp.Regions = append(resp.Regions, rg)
			}
		}
		return resp, nil
	case "DescribeThings":
		n, err := p.Int("Count", 10)
		if err != nil {
			return nil, err
		}
		pg, err := r.Page(0, 0)
		if err != nil {
			return nil, err
		}
		all := makeThings(int(n))
		page, next := Paginate(all, func(t thing) string { return t.ID }, pg)
		return describeThingsResponse{Things: page, NextToken: next}, nil // a struct value, not a pointer
	case "Panic":
		panic("handler bug")
	case "Fail":
		return nil, errors.New("disk full at /var/lib/secret")
	case "Nothing":
		return nil, nil
	case "NoMeta":
		return struct{ X int }{1}, nil
	}
	return nil, InvalidAction(r.Action)
}

func makeThings(n int) []thing {
	out := make([]thing, n)
	for i := range out {
		out[i] = thing{ID: fmt.Sprintf("t-%08d", i), Count: i, Created: TimeOf(testClock.Add(time.Duration(i) * time.Millisecond))}
	}
	return out
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

type fixture struct {
	srv  *Server
	h    *testHandler
	logs *lab.Buffer
}

func newFixture(t testing.TB, now func() time.Time) *fixture {
	t.Helper()
	f := &fixture{h: &testHandler{}, logs: &lab.Buffer{}}
	f.srv = NewServer(Config{
		Handler:     f.h,
		Credentials: testCreds{},
		Logger:      slog.New(slog.NewTextHandler(f.logs, nil)),
		Now:         now,
		TokenKey:    []byte("test token key"),
	})
	return f
}

func fixed(t time.Time) func() time.Time { return func() time.Time { return t } }

// newQuery builds a Query request: a form POST, or a GET with the
// parameters in the URL.
func newQuery(method, target string, params url.Values) *http.Request {
	var r *http.Request
	if method == http.MethodGet {
		u, _ := url.Parse(target)
		u.RawQuery = params.Encode()
		r, _ = http.NewRequest(method, u.String(), nil)
	} else {
		r, _ = http.NewRequest(method, target, strings.NewReader(params.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
	}
	r.RemoteAddr = "192.0.2.7:40000"
	return r
}

func bodyHash(t testing.TB, r *http.Request) string {
	t.Helper()
	var b []byte
	if r.Body != nil {
		var err error
		b, err = io.ReadAll(r.Body)
		if err != nil {
			t.Fatal(err)
		}
		r.Body = io.NopCloser(bytes.NewReader(b))
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// signV4 signs r with aws-sdk-go-v2's own Signature V4 signer.
func signV4(t testing.TB, r *http.Request, ak, secret string, at time.Time, region, service string) *http.Request {
	t.Helper()
	err := v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: ak, SecretAccessKey: secret},
		r, bodyHash(t, r), service, region, at)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// presignV4 presigns r (a GET) with the SDK's signer.
func presignV4(t testing.TB, r *http.Request, ak, secret string, at time.Time, expires int) *http.Request {
	t.Helper()
	q := r.URL.Query()
	q.Set("X-Amz-Expires", fmt.Sprint(expires))
	r.URL.RawQuery = q.Encode()
	uri, hdr, err := v4.NewSigner().PresignHTTP(context.Background(), aws.Credentials{AccessKeyID: ak, SecretAccessKey: secret},
		r, bodyHash(t, r), "ec2", "us-east-1", at)
	if err != nil {
		t.Fatal(err)
	}
	out, _ := http.NewRequest(r.Method, uri, nil)
	for k, vs := range hdr {
		if k != "Host" {
			out.Header[k] = vs
		}
	}
	out.RemoteAddr = r.RemoteAddr
	return out
}

// signV2 is ec2test.SignV2, a Signature V2 signer written from the
// specification, not from the server's code.
func signV2(params url.Values, method, host, path, ak, secret, alg string, at time.Time, expires bool) url.Values {
	return ec2test.SignV2(params, method, host, path, ak, secret, alg, at, expires)
}

func (f *fixture) do(r *http.Request) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	f.srv.ServeHTTP(rec, r)
	return rec
}

type wireError struct {
	XMLName   xml.Name `xml:"Response"`
	Code      string   `xml:"Errors>Error>Code"`
	Message   string   `xml:"Errors>Error>Message"`
	RequestID string   `xml:"RequestID"`
}

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

// checkEnvelope checks what every answer must have; it returns the error
// code ("" for a success).
func checkEnvelope(t *testing.T, rec *httptest.ResponseRecorder) string {
	t.Helper()
	body := rec.Body.String()
	if !strings.HasPrefix(body, `<?xml version="1.0" encoding="UTF-8"?>`) {
		t.Errorf("body does not start with the XML declaration: %.80q", body)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "text/xml;charset=UTF-8" {
		t.Errorf("Content-Type %q", ct)
	}
	id := rec.Header().Get("x-amzn-RequestId")
	if !uuidRE.MatchString(id) {
		t.Errorf("x-amzn-RequestId %q is not a UUID", id)
	}
	if rec.Code == http.StatusOK {
		if !strings.Contains(body, "<requestId>"+id+"</requestId>") {
			t.Errorf("success without requestId %s: %.300s", id, body)
		}
		return ""
	}
	var we wireError
	if err := xml.Unmarshal(rec.Body.Bytes(), &we); err != nil {
		t.Fatalf("error body does not parse: %v\n%s", err, body)
	}
	if we.RequestID != id {
		t.Errorf("RequestID %q, header %q", we.RequestID, id)
	}
	if we.Code == "" || we.Message == "" {
		t.Errorf("error without code or message: %s", body)
	}
	if rec.Code < 400 {
		t.Errorf("error %s with status %d", we.Code, rec.Code)
	}
	return we.Code
}

func regionsQuery(version string) url.Values {
	v := url.Values{"Action": {"DescribeRegions"}}
	if version != "" {
		v.Set("Version", version)
	}
	return v
}

func TestServerAuth(t *testing.T) {
	now := testClock
	endpoint := "http://127.0.0.1:8773/"
	post := func(q url.Values) *http.Request { return newQuery(http.MethodPost, endpoint, q) }
	get := func(q url.Values) *http.Request { return newQuery(http.MethodGet, endpoint, q) }
	v2 := func(method, host, alg string, at time.Time, expires bool) *http.Request {
		q := signV2(regionsQuery("2014-10-01"), method, host, "/services/compute/", testAK, testSecret, alg, at, expires)
		r := newQuery(method, "http://127.0.0.1:8773/services/compute/", q)
		return r
	}
	tests := []struct {
		name   string
		req    func() *http.Request
		status int
		code   string
	}{
		{"v4 POST", func() *http.Request {
			return signV4(t, post(regionsQuery("2016-11-15")), testAK, testSecret, now, "us-east-1", "ec2")
		}, 200, ""},
		{"v4 GET", func() *http.Request {
			return signV4(t, get(regionsQuery("2016-11-15")), testAK, testSecret, now, "us-east-1", "ec2")
		}, 200, ""},
		{"v4 odd scope", func() *http.Request {
			return signV4(t, post(regionsQuery("2015-10-01")), testAK, testSecret, now, "undefined-4242", "127")
		}, 200, ""},
		{"v4 14 min old", func() *http.Request {
			return signV4(t, post(regionsQuery("2016-11-15")), testAK, testSecret, now.Add(-14*time.Minute), "r", "ec2")
		}, 200, ""},
		{"v4 16 min old", func() *http.Request {
			return signV4(t, post(regionsQuery("2016-11-15")), testAK, testSecret, now.Add(-16*time.Minute), "r", "ec2")
		}, 400, CodeRequestExpired},
		{"v4 16 min ahead", func() *http.Request {
			return signV4(t, post(regionsQuery("2016-11-15")), testAK, testSecret, now.Add(16*time.Minute), "r", "ec2")
		}, 400, CodeRequestExpired},
		{"v4 unknown key", func() *http.Request {
			return signV4(t, post(regionsQuery("2016-11-15")), "AKIANOBODY0000000000", testSecret, now, "r", "ec2")
		}, 401, CodeAuthFailure},
		{"v4 wrong secret", func() *http.Request {
			return signV4(t, post(regionsQuery("2016-11-15")), testAK, "wrong", now, "r", "ec2")
		}, 403, CodeSignatureDoesNotMatch},
		{"v4 body changed after signing", func() *http.Request {
			r := signV4(t, post(regionsQuery("2016-11-15")), testAK, testSecret, now, "r", "ec2")
			b := url.Values{"Action": {"DescribeRegions"}, "Version": {"2016-11-15"}, "RegionName.1": {"x"}}.Encode()
			r.Body = io.NopCloser(strings.NewReader(b))
			r.ContentLength = int64(len(b))
			return r
		}, 403, CodeSignatureDoesNotMatch},
		{"v4 signed header changed", func() *http.Request {
			r := signV4(t, post(regionsQuery("2016-11-15")), testAK, testSecret, now, "r", "ec2")
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			return r
		}, 403, CodeSignatureDoesNotMatch},
		{"v4 host changed", func() *http.Request {
			r := signV4(t, post(regionsQuery("2016-11-15")), testAK, testSecret, now, "r", "ec2")
			r.Host = "evil.example:8773"
			return r
		}, 403, CodeSignatureDoesNotMatch},
		{"v4 signature not hex", func() *http.Request {
			r := signV4(t, post(regionsQuery("2016-11-15")), testAK, testSecret, now, "r", "ec2")
			a := r.Header.Get("Authorization")
			r.Header.Set("Authorization", a[:strings.LastIndex(a, "=")+1]+"zz")
			return r
		}, 403, CodeSignatureDoesNotMatch},
		{"v4 no Credential", func() *http.Request {
			r := post(regionsQuery("2016-11-15"))
			r.Header.Set("Authorization", "AWS4-HMAC-SHA256 SignedHeaders=host, Signature=00")
			r.Header.Set("X-Amz-Date", now.Format(amzDateFormat))
			return r
		}, 400, "IncompleteSignature"},
		{"v4 no date", func() *http.Request {
			r := signV4(t, post(regionsQuery("2016-11-15")), testAK, testSecret, now, "r", "ec2")
			r.Header.Del("X-Amz-Date")
			return r
		}, 400, "IncompleteSignature"},
		{"S3-style header", func() *http.Request {
			r := post(regionsQuery("2016-11-15"))
			r.Header.Set("Authorization", "AWS "+testAK+":abc=")
			return r
		}, 400, "IncompleteSignature"},
		{"store down", func() *http.Request {
			return signV4(t, post(regionsQuery("2016-11-15")), "AKIABROKENSTORE00001", testSecret, now, "r", "ec2")
		}, 500, CodeInternalError},
		{"presigned GET", func() *http.Request {
			return presignV4(t, get(regionsQuery("2016-11-15")), testAK, testSecret, now.Add(-time.Minute), 300)
		}, 200, ""},
		{"presigned GET expired", func() *http.Request {
			return presignV4(t, get(regionsQuery("2016-11-15")), testAK, testSecret, now.Add(-10*time.Minute), 300)
		}, 400, CodeRequestExpired},
		{"presigned GET tampered", func() *http.Request {
			r := presignV4(t, get(regionsQuery("2016-11-15")), testAK, testSecret, now, 300)
			r.URL.RawQuery += "&RegionName.1=x"
			return r
		}, 403, CodeSignatureDoesNotMatch},
		{"v2 POST HmacSHA256", func() *http.Request { return v2("POST", "127.0.0.1:8773", "HmacSHA256", now, false) }, 200, ""},
		{"v2 GET HmacSHA1", func() *http.Request { return v2("GET", "127.0.0.1:8773", "HmacSHA1", now, false) }, 200, ""},
		{"v2 host without port (boto2)", func() *http.Request { return v2("POST", "127.0.0.1", "HmacSHA256", now, false) }, 200, ""},
		{"v2 upper-case host", func() *http.Request {
			r := v2("POST", "LOCALHOST:8773", "HmacSHA256", now, false)
			r.Host = "LocalHost:8773"
			return r
		}, 200, ""},
		{"v2 wrong host", func() *http.Request { return v2("POST", "10.0.0.1:8773", "HmacSHA256", now, false) }, 403, CodeSignatureDoesNotMatch},
		{"v2 wrong method", func() *http.Request {
			q := signV2(regionsQuery("2014-10-01"), "GET", "127.0.0.1:8773", "/services/compute/", testAK, testSecret, "HmacSHA256", now, false)
			return newQuery("POST", "http://127.0.0.1:8773/services/compute/", q)
		}, 403, CodeSignatureDoesNotMatch},
		{"v2 Expires ahead", func() *http.Request { return v2("POST", "127.0.0.1:8773", "HmacSHA256", now.Add(time.Minute), true) }, 200, ""},
		{"v2 Expires passed", func() *http.Request { return v2("POST", "127.0.0.1:8773", "HmacSHA256", now.Add(-time.Second), true) }, 400, CodeRequestExpired},
		{"v2 Expires at the window", func() *http.Request { return v2("POST", "127.0.0.1:8773", "HmacSHA256", now.Add(15*time.Minute), true) }, 200, ""},
		{"v2 Expires past the window", func() *http.Request {
			return v2("POST", "127.0.0.1:8773", "HmacSHA256", now.Add(15*time.Minute+time.Second), true)
		}, 400, CodeRequestExpired},
		{"v2 Expires in 20 years", func() *http.Request {
			return v2("POST", "127.0.0.1:8773", "HmacSHA256", now.AddDate(20, 0, 0), true)
		}, 400, CodeRequestExpired},
		{"v2 Timestamp old", func() *http.Request {
			return v2("POST", "127.0.0.1:8773", "HmacSHA256", now.Add(-20*time.Minute), false)
		}, 400, CodeRequestExpired},
		{"v2 wrong secret", func() *http.Request {
			q := signV2(regionsQuery("2014-10-01"), "POST", "127.0.0.1:8773", "/", testAK, "nope", "HmacSHA256", now, false)
			return post(q)
		}, 403, CodeSignatureDoesNotMatch},
		{"v2 unknown key", func() *http.Request {
			q := signV2(regionsQuery("2014-10-01"), "POST", "127.0.0.1:8773", "/", "AKIAWHO", testSecret, "HmacSHA256", now, false)
			return post(q)
		}, 401, CodeAuthFailure},
		{"v2 SignatureVersion 1", func() *http.Request {
			q := signV2(regionsQuery("2014-10-01"), "POST", "127.0.0.1:8773", "/", testAK, testSecret, "HmacSHA256", now, false)
			q.Set("SignatureVersion", "1")
			return post(q)
		}, 400, CodeInvalidParameterValue},
		{"v2 Timestamp and Expires", func() *http.Request {
			q := signV2(regionsQuery("2014-10-01"), "POST", "127.0.0.1:8773", "/", testAK, testSecret, "HmacSHA256", now, false)
			q.Set("Expires", "2030-01-01T00:00:00Z")
			return post(q)
		}, 400, CodeInvalidParameterCombination},
		{"v2 bad Timestamp", func() *http.Request {
			q := signV2(regionsQuery("2014-10-01"), "POST", "127.0.0.1:8773", "/", testAK, testSecret, "HmacSHA256", now, false)
			q.Set("Timestamp", "yesterday")
			return post(q)
		}, 400, CodeInvalidParameterValue},
		{"unsigned", func() *http.Request { return post(regionsQuery("2016-11-15")) }, 400, CodeMissingParameter},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, fixed(now))
			rec := f.do(tt.req())
			code := checkEnvelope(t, rec)
			if rec.Code != tt.status || code != tt.code {
				t.Errorf("got %d %s, want %d %s\n%s", rec.Code, code, tt.status, tt.code, rec.Body)
			}
		})
	}
}

// TestV4DateHeader signs with the Date header instead of X-Amz-Date, by
// hand from the specification (the SDK always sends X-Amz-Date).
func TestV4DateHeader(t *testing.T) {
	now := testClock
	f := newFixture(t, fixed(now))
	r := newQuery(http.MethodPost, "http://localhost:8773/services/compute", regionsQuery("2016-11-15"))
	r.Header.Set("Date", now.Format(http.TimeFormat))
	r.Header.Add("X-Extra", "  a   b ")
	r.Header.Add("X-Extra", "c")
	body := regionsQuery("2016-11-15").Encode()
	sum := sha256.Sum256([]byte(body))
	creq := strings.Join([]string{
		"POST", "/services/compute", "",
		"content-type:application/x-www-form-urlencoded; charset=utf-8\ndate:" + now.Format(http.TimeFormat) +
			"\nhost:localhost:8773\nx-extra:a b,c\n",
		"content-type;date;host;x-extra", hex.EncodeToString(sum[:]),
	}, "\n")
	csum := sha256.Sum256([]byte(creq))
	amz := now.Format("20060102T150405Z")
	scope := "20261124/eu-1/ec2/aws4_request"
	sts := "AWS4-HMAC-SHA256\n" + amz + "\n" + scope + "\n" + hex.EncodeToString(csum[:])
	k := []byte("AWS4" + testSecret)
	for _, part := range []string{"20261124", "eu-1", "ec2", "aws4_request"} {
		k = hmacSHA256(k, part)
	}
	r.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential="+testAK+"/"+scope+
		",SignedHeaders=content-type;date;host;x-extra,Signature="+hex.EncodeToString(hmacSHA256(k, sts)))
	rec := f.do(r)
	if code := checkEnvelope(t, rec); rec.Code != 200 {
		t.Fatalf("status %d %s: %s", rec.Code, code, rec.Body)
	}
}

func TestServerRequestShape(t *testing.T) {
	now := testClock
	sign := func(r *http.Request) *http.Request { return signV4(t, r, testAK, testSecret, now, "us-east-1", "ec2") }
	tests := []struct {
		name   string
		method string
		path   string
		params url.Values
		status int
		code   string
	}{
		{"root", "POST", "/", regionsQuery("2016-11-15"), 200, ""},
		{"compute", "POST", "/services/compute", regionsQuery("2016-11-15"), 200, ""},
		{"compute/", "POST", "/services/compute/", regionsQuery("2016-11-15"), 200, ""},
		{"Eucalyptus", "GET", "/services/Eucalyptus", regionsQuery("2016-11-15"), 200, ""},
		{"Eucalyptus/", "POST", "/services/Eucalyptus/", regionsQuery("2016-11-15"), 200, ""},
		{"other path", "POST", "/services/objectstorage", regionsQuery("2016-11-15"), 404, "NotFound"},
		{"PUT", "PUT", "/", regionsQuery("2016-11-15"), 405, "MethodNotAllowed"},
		{"no Version", "POST", "/", regionsQuery(""), 400, CodeMissingParameter},
		{"bad Version", "POST", "/", regionsQuery("latest"), 400, CodeNoSuchVersion},
		{"no Action", "POST", "/", url.Values{"Version": {"2016-11-15"}}, 400, CodeMissingParameter},
		{"odd Action", "POST", "/", url.Values{"Action": {"<x>"}, "Version": {"2016-11-15"}}, 400, CodeInvalidAction},
		{"unknown Action", "POST", "/", url.Values{"Action": {"LaunchMissiles"}, "Version": {"2016-11-15"}}, 400, CodeInvalidAction},
		{"bad filter", "POST", "/", url.Values{"Action": {"DescribeRegions"}, "Version": {"2016-11-15"},
			"Filter.1.Name": {"color"}, "Filter.1.Value.1": {"red"}}, 400, CodeInvalidParameterValue},
		{"bad list", "POST", "/", url.Values{"Action": {"DescribeRegions"}, "Version": {"2016-11-15"},
			"RegionName.x": {"a"}}, 400, CodeUnknownParameter},
		{"handler error", "POST", "/", url.Values{"Action": {"Fail"}, "Version": {"2016-11-15"}}, 500, CodeInternalError},
		{"handler panic", "POST", "/", url.Values{"Action": {"Panic"}, "Version": {"2016-11-15"}}, 500, CodeInternalError},
		{"response without meta", "POST", "/", url.Values{"Action": {"NoMeta"}, "Version": {"2016-11-15"}}, 500, CodeInternalError},
		{"nil response", "POST", "/", url.Values{"Action": {"Nothing"}, "Version": {"2016-11-15"}}, 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, fixed(now))
			rec := f.do(sign(newQuery(tt.method, "http://127.0.0.1:8773"+tt.path, tt.params)))
			code := checkEnvelope(t, rec)
			if rec.Code != tt.status || code != tt.code {
				t.Errorf("got %d %s, want %d %s\n%s", rec.Code, code, tt.status, tt.code, rec.Body)
			}
			if rec.Code == 500 && strings.Contains(rec.Body.String(), "secret") {
				t.Errorf("internal detail leaked: %s", rec.Body)
			}
			logs := f.logs.String()
			if !strings.Contains(logs, "msg=\"ec2 request\"") || !strings.Contains(logs, fmt.Sprintf("status=%d", tt.status)) {
				t.Errorf("log line missing: %s", logs)
			}
			if tt.name == "handler panic" && !strings.Contains(logs, "handler bug") {
				t.Errorf("panic not logged: %s", logs)
			}
		})
	}
}

func TestServerRequestToHandler(t *testing.T) {
	f := newFixture(t, fixed(testClock))
	q := signV2(url.Values{"Action": {"DescribeRegions"}, "Version": {"2014-06-15"}, "RegionName.1": {"ironbark"}},
		"POST", "127.0.0.1:8773", "/", testAK, testSecret, "HmacSHA256", testClock, false)
	rec := f.do(newQuery("POST", "http://127.0.0.1:8773/", q))
	if checkEnvelope(t, rec); rec.Code != 200 {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	r := f.h.last
	if r.Principal.AccountID != testAcct || r.Principal.AccessKey != testAK || r.SourceIP != "192.0.2.7" ||
		r.Version != "2014-06-15" || r.RequestID != rec.Header().Get("x-amzn-RequestId") {
		t.Errorf("request %+v", r)
	}
	for k := range r.Params {
		if isSignatureParam(k) {
			t.Errorf("signature parameter %s reached the handler", k)
		}
	}
	if !strings.Contains(rec.Body.String(), `<DescribeRegionsResponse xmlns="http://ec2.amazonaws.com/doc/2014-06-15/">`) {
		t.Errorf("root element: %s", rec.Body)
	}
	if strings.Contains(rec.Body.String(), "ironbark-west") {
		t.Errorf("RegionName.1 not applied: %s", rec.Body)
	}
}

func TestServerBodyLimit(t *testing.T) {
	f := newFixture(t, fixed(testClock))
	f.srv.maxBody = 1024
	big := regionsQuery("2016-11-15")
	big.Set("Pad", strings.Repeat("x", 2000))
	r := signV4(t, newQuery("POST", "http://127.0.0.1:8773/", big), testAK, testSecret, testClock, "r", "ec2")
	rec := f.do(r)
	if code := checkEnvelope(t, rec); rec.Code != 413 || code != CodeRequestEntityTooLarge {
		t.Errorf("got %d %s", rec.Code, code)
	}
	// Without a Content-Length (chunked), the limit holds while reading.
	r = signV4(t, newQuery("POST", "http://127.0.0.1:8773/", big), testAK, testSecret, testClock, "r", "ec2")
	r.ContentLength = -1
	rec = f.do(r)
	if code := checkEnvelope(t, rec); rec.Code != 413 || code != CodeRequestEntityTooLarge {
		t.Errorf("chunked: got %d %s", rec.Code, code)
	}
}

func TestServerVersions(t *testing.T) {
	for _, v := range []string{"2016-11-15", "2015-10-01", "2014-10-01", "2014-06-15", "2014-05-01", "2031-02-28"} {
		f := newFixture(t, fixed(testClock))
		rec := f.do(signV4(t, newQuery("POST", "http://127.0.0.1:8773/", regionsQuery(v)), testAK, testSecret, testClock, "r", "ec2"))
		want := `<DescribeRegionsResponse xmlns="http://ec2.amazonaws.com/doc/` + v + `/">`
		if checkEnvelope(t, rec); rec.Code != 200 || !strings.Contains(rec.Body.String(), want) {
			t.Errorf("version %s: %d %s", v, rec.Code, rec.Body)
		}
	}
	for _, v := range []string{"2016-13-01", "2016-1-15", "20161115", "2016-11-15x"} {
		if _, err := Namespace(v); code(err) != CodeNoSuchVersion {
			t.Errorf("Namespace(%q) = %v", v, err)
		}
	}
}

func TestServerPagination(t *testing.T) {
	f := newFixture(t, fixed(testClock))
	var ids []string
	token := ""
	for i := 0; i < 10; i++ {
		q := url.Values{"Action": {"DescribeThings"}, "Version": {"2016-11-15"}, "Count": {"12"}, "MaxResults": {"5"}}
		if token != "" {
			q.Set("NextToken", token)
		}
		rec := f.do(signV4(t, newQuery("POST", "http://127.0.0.1:8773/", q), testAK, testSecret, testClock, "r", "ec2"))
		if checkEnvelope(t, rec); rec.Code != 200 {
			t.Fatalf("%d %s", rec.Code, rec.Body)
		}
		var resp describeThingsResponse
		if err := xml.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
			t.Fatal(err)
		}
		for _, th := range resp.Things {
			ids = append(ids, th.ID)
		}
		if token = resp.NextToken; token == "" {
			break
		}
	}
	if len(ids) != 12 || ids[0] != "t-00000000" || ids[11] != "t-00000011" {
		t.Errorf("paged ids %v", ids)
	}
	q := url.Values{"Action": {"DescribeThings"}, "Version": {"2016-11-15"}, "NextToken": {"bm9wZQ"}}
	rec := f.do(signV4(t, newQuery("POST", "http://127.0.0.1:8773/", q), testAK, testSecret, testClock, "r", "ec2"))
	if code := checkEnvelope(t, rec); code != CodeInvalidParameterValue {
		t.Errorf("bad token: %d %s", rec.Code, rec.Body)
	}
}
