package ec2

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/xml"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"ironbark/controller/ec2/ec2test"
)

// FuzzParseQuery feeds arbitrary query strings and form bodies to the
// parser and to every Params reader: nothing may panic, and what parses
// must be readable without error other than an *Error.
func FuzzParseQuery(f *testing.F) {
	f.Add("Action=DescribeInstances&Version=2016-11-15", "InstanceId.1=i-1&InstanceId.3=i-3", "application/x-www-form-urlencoded; charset=utf-8")
	f.Add("", "Action=AuthorizeSecurityGroupIngress&IpPermissions.1.IpRanges.2.CidrIp=10.0.0.0%2F8&IpPermissions.1.IpProtocol=tcp", "")
	f.Add("Filter.1.Name=tag%3AName&Filter.1.Value.1=web-%3F*&Filter.1.Value.2=%5C*", "", "")
	f.Add("a=%zz", "b=;", "text/plain")
	f.Add("", "TagSpecification.1.Tag.01.Key=a&TagSpecification.1.Tag.1.Key=b&TagSpecification.x.Tag=c", "application/x-www-form-urlencoded")
	f.Add("MaxResults=5&NextToken=AWJ-AAAAAAAAAAAAAAAAAAAAAAA", "", "")
	f.Fuzz(func(t *testing.T, rawQuery, body, contentType string) {
		w := &wireRequest{Method: http.MethodPost, Host: "h", Path: "/", RawQuery: rawQuery,
			Header: http.Header{"Content-Type": {contentType}}, Body: []byte(body)}
		q, err := parseQuery(w)
		if err != nil {
			mustBeAPIError(t, err)
			return
		}
		p := NewParams(q.All)
		for _, name := range []string{"InstanceId", "Filter", "IpPermissions", "TagSpecification", "Tag", "a"} {
			if _, err := p.Strings(name); err != nil {
				mustBeAPIError(t, err)
			}
			items, err := p.List(name)
			if err != nil {
				mustBeAPIError(t, err)
			}
			for _, it := range items {
				for _, sub := range []string{"IpRanges", "Tag", "Value"} {
					if _, err := it.List(sub); err != nil {
						mustBeAPIError(t, err)
					}
					if _, err := it.Strings(sub); err != nil {
						mustBeAPIError(t, err)
					}
				}
				_, _ = it.Int("FromPort", 0)
			}
		}
		fs, err := p.Filters()
		if err != nil {
			mustBeAPIError(t, err)
		}
		for _, fl := range fs {
			fl.Match(body)
		}
		if err := p.Check("InstanceId.N", "Filter.N.Name", "Filter.N.Value.N"); err != nil {
			mustBeAPIError(t, err)
		}
		r := &Request{Action: "DescribeInstances", Params: q.All}
		if _, err := r.Page(0, 0); err != nil {
			mustBeAPIError(t, err)
		}
		_ = WildcardMatch(rawQuery, body)
	})
}

func mustBeAPIError(t *testing.T, err error) {
	t.Helper()
	if e, ok := err.(*Error); !ok || e.Code == "" || e.Status < 400 {
		t.Fatalf("not an EC2 error: %#v", err)
	}
}

// FuzzVerify feeds arbitrary signature material to the verifier: nothing
// may panic and nothing forged may pass. Every input that is not signed
// with the secret must fail; the seeds include real signatures.
func FuzzVerify(f *testing.F) {
	now := testClock
	params := regionsQuery("2016-11-15").Encode()
	r := signV4(f, newQuery(http.MethodPost, "http://127.0.0.1:8773/", regionsQuery("2016-11-15")), testAK, testSecret, now, "us-east-1", "ec2")
	f.Add("POST", "127.0.0.1:8773", "/", "", params, r.Header.Get("Authorization"), r.Header.Get("X-Amz-Date"), "")
	v2 := signV2(regionsQuery("2014-10-01"), "POST", "127.0.0.1", "/services/compute/", testAK, testSecret, "HmacSHA256", now, false)
	f.Add("POST", "127.0.0.1:8773", "/services/compute/", "", v2.Encode(), "", "", "")
	v2g := signV2(regionsQuery("2014-10-01"), "GET", "localhost:8773", "/", testAK, testSecret, "HmacSHA1", now, true)
	f.Add("GET", "localhost:8773", "/", v2g.Encode(), "", "", "", "")
	p := presignV4(f, newQuery(http.MethodGet, "http://127.0.0.1:8773/", regionsQuery("2016-11-15")), testAK, testSecret, now, 60)
	f.Add("GET", "127.0.0.1:8773", "/", p.URL.RawQuery, "", "", "", "")
	f.Add("POST", "[::1]:8773", "/", "", params, "AWS4-HMAC-SHA256 Credential=AKIA/2026/x/y/aws4_request,SignedHeaders=host,Signature=00", "20261124T204542Z", "UNSIGNED-PAYLOAD")
	f.Add("POST", "h", "", "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Expires=-1", "", "AWS4-HMAC-SHA256 ,,=,", "", "")
	f.Fuzz(func(t *testing.T, method, host, path, rawQuery, body, auth, amzDate, contentSHA string) {
		h := http.Header{"Content-Type": {"application/x-www-form-urlencoded; charset=utf-8"}}
		if auth != "" {
			h.Set("Authorization", auth)
		}
		if amzDate != "" {
			h.Set("X-Amz-Date", amzDate)
		}
		if contentSHA != "" {
			h.Set("X-Amz-Content-Sha256", contentSHA)
		}
		w := &wireRequest{Method: method, Host: host, Path: path, RawQuery: rawQuery, Header: h,
			Body: []byte(body), ContentLength: int64(len(body))}
		q, err := parseQuery(w)
		if err != nil {
			mustBeAPIError(t, err)
			return
		}
		sig, err := parseSignature(w, q)
		if err != nil {
			mustBeAPIError(t, err)
			return
		}
		// The wrong secret never verifies, whatever the input.
		if err := sig.verify(w, q, verifyInput{Secret: "other secret", Now: now, Skew: DefaultClockSkew}); err == nil {
			t.Fatalf("verified with the wrong secret: %+v", w)
		} else {
			mustBeAPIError(t, err)
		}
		if err := sig.verify(w, q, verifyInput{Secret: testSecret, Now: now, Skew: DefaultClockSkew}); err != nil {
			mustBeAPIError(t, err)
		}
	})
}

// FuzzSigV4RoundTrip is differential: whatever parameters, headers and
// host a client sends, a request signed by aws-sdk-go-v2's signer must
// verify, and must stop verifying when one byte of its body changes.
func FuzzSigV4RoundTrip(f *testing.F) {
	f.Add("DescribeRegions", "RegionName.1", "a b+c/~*'()!", "X-Custom", "  spaced   value ", "127.0.0.1:8773", "/services/compute/", true)
	f.Add("RunInstances", "UserData", "IyEvYmluL3NoCmVjaG8gaGk=", "Content-Md5", "x", "localhost", "/", false)
	f.Add("DescribeTags", "Filter.1.Value.1", "ünïcödé ☃ %41", "X-Amz-Meta", "", "[::1]:8773", "/services/Eucalyptus", true)
	f.Fuzz(func(t *testing.T, action, key, value, hname, hvalue, host, path string, post bool) {
		if !IsEndpointPath(path) || key == "" || !validHeaderName(hname) || !validHeaderValue(hvalue) || !validHost(host) {
			t.Skip()
		}
		params := url.Values{"Action": {action}, "Version": {"2016-11-15"}, key: {value}}
		method := http.MethodGet
		if post {
			method = http.MethodPost
		}
		r := newQuery(method, "http://"+host+path, params)
		if r == nil || r.URL == nil {
			t.Skip()
		}
		r.Host = host
		r.Header.Set(hname, hvalue)
		var body []byte
		if post {
			body = []byte(params.Encode())
		}
		err := v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: testAK, SecretAccessKey: testSecret},
			r, sha256Hex(body), "ec2", "us-east-1", testClock)
		if err != nil {
			t.Skip()
		}
		w := newWireRequest(r, body)
		check := func(w *wireRequest) error {
			q, err := parseQuery(w)
			if err != nil {
				return err
			}
			sig, err := parseSignature(w, q)
			if err != nil {
				return err
			}
			return sig.verify(w, q, verifyInput{Secret: testSecret, Now: testClock, Skew: DefaultClockSkew})
		}
		if err := check(w); err != nil {
			t.Fatalf("SDK-signed request rejected: %v\n%s %s%s?%s\n%v\n%q", err, method, host, path, r.URL.RawQuery, r.Header, body)
		}
		if post {
			bad := *w
			bad.Body = bytes.Replace(body, []byte("Version=2016"), []byte("Version=2017"), 1)
			if check(&bad) == nil {
				t.Fatalf("changed body verified")
			}
		}

		// The same parameters signed with Signature V2, in the body or the
		// query string, and presigned V4 in the query string.
		v2 := ec2test.SignV2(params, method, host, path, testAK, testSecret, "HmacSHA256", testClock, false)
		w2 := &wireRequest{Method: method, Host: host, Path: path, Header: http.Header{
			"Content-Type": {"application/x-www-form-urlencoded"}}}
		if post {
			w2.Body = []byte(v2.Encode())
		} else {
			w2.RawQuery = v2.Encode()
		}
		if err := check(w2); err != nil {
			t.Fatalf("V2-signed request rejected: %v\n%+v", err, w2)
		}
		if !post {
			p := presignV4(t, newQuery(method, "http://"+host+path, params), testAK, testSecret, testClock, 300)
			p.Host = r.Host
			if err := check(newWireRequest(p, nil)); err != nil {
				t.Fatalf("presigned request rejected: %v\n%s", err, p.URL)
			}
		}
	})
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func validHeaderName(s string) bool {
	if s == "" || strings.EqualFold(s, "host") || strings.EqualFold(s, "authorization") ||
		strings.EqualFold(s, "content-type") || strings.EqualFold(s, "content-length") ||
		strings.HasPrefix(strings.ToLower(s), "x-amz-") {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// validHeaderValue admits what an HTTP/1.1 client can send: printable
// ASCII and spaces (the signer and the server see the same bytes).
func validHeaderValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

func validHost(s string) bool {
	if s == "" || len(s) > 100 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '.' || c == ':' || c == '-' || c == '[' || c == ']') {
			return false
		}
	}
	_, err := url.Parse("http://" + s + "/")
	return err == nil
}

// FuzzServe sends arbitrary requests through the whole Server: whatever
// comes in, the answer is a status from 200 to 599, a UUID request id,
// and a well-formed XML document that starts with the declaration.
func FuzzServe(f *testing.F) {
	ok := signV4(f, newQuery(http.MethodPost, "http://127.0.0.1:8773/", url.Values{
		"Action": {"DescribeRegions"}, "Version": {"2016-11-15"}, "RegionName.1": {"ironbark"}}), testAK, testSecret, testClock, "r", "ec2")
	f.Add("POST", "/", "", "Action=DescribeRegions&RegionName.1=ironbark&Version=2016-11-15", ok.Header.Get("Authorization"), ok.Header.Get("X-Amz-Date"))
	f.Add("GET", "/services/compute", "Action=DescribeThings&Version=2016-11-15&MaxResults=5&NextToken=%ff", "", "", "")
	f.Add("POST", "/services/Eucalyptus/", "", "Action=Describe%C0Regions&Version=%00&AWSAccessKeyId=x&SignatureVersion=2&SignatureMethod=HmacSHA1&Signature=x&Timestamp=2026-11-24T20:45:42Z", "", "")
	f.Add("PUT", "/x\xff", "", "", "AWS4-HMAC-SHA256 Credential=\xff/20261124/a/b/aws4_request, SignedHeaders=host, Signature=00", "")
	f.Fuzz(func(t *testing.T, method, path, rawQuery, body, auth, amzDate string) {
		srv := NewServer(Config{Handler: &testHandler{}, Credentials: testCreds{}, Logger: slog.New(slog.DiscardHandler),
			Now: fixed(testClock), MaxBodyBytes: 4096, TokenKey: []byte("k")})
		r := &http.Request{
			Method: method, Host: "127.0.0.1:8773",
			URL:    &url.URL{Path: path, RawQuery: rawQuery},
			Header: http.Header{"Content-Type": {"application/x-www-form-urlencoded"}},
			Body:   io.NopCloser(strings.NewReader(body)), ContentLength: int64(len(body)),
			RemoteAddr: "192.0.2.1:1234",
		}
		if auth != "" {
			r.Header.Set("Authorization", auth)
		}
		if amzDate != "" {
			r.Header.Set("X-Amz-Date", amzDate)
		}
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, r)
		if rec.Code < 200 || rec.Code > 599 {
			t.Fatalf("status %d", rec.Code)
		}
		if !uuidRE.MatchString(rec.Header().Get("x-amzn-RequestId")) {
			t.Fatalf("request id %q", rec.Header().Get("x-amzn-RequestId"))
		}
		b := rec.Body.Bytes()
		if !bytes.HasPrefix(b, []byte(`<?xml version="1.0" encoding="UTF-8"?>`)) {
			t.Fatalf("no XML declaration first: %q", b)
		}
		d := xml.NewDecoder(bytes.NewReader(b))
		for {
			_, err := d.Token()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("answer is not well-formed XML: %v\n%q", err, b)
			}
		}
	})
}
