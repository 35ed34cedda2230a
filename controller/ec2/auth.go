package ec2

import (
	"crypto/hmac"
	"crypto/sha256"
	"net/http"
	"strings"
	"time"
)

// isSignatureParam reports parameters that are the signature's own, not
// the action's: the wire layer drops them from Request.Params.
func isSignatureParam(name string) bool {
	switch name {
	case "AWSAccessKeyId", "Signature", "SignatureMethod", "SignatureVersion", "Timestamp", "Expires",
		"X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires",
		"X-Amz-SignedHeaders", "X-Amz-Signature", "X-Amz-Security-Token":
		return true
	}
	return false
}

// authScheme says how a request was signed.
type authScheme int

const (
	schemeV4Header authScheme = iota + 1
	schemeV4Query
	schemeV2
)

func (s authScheme) String() string {
	switch s {
	case schemeV4Header:
		return "sigv4"
	case schemeV4Query:
		return "sigv4-query"
	case schemeV2:
		return "sigv2"
	}
	return "none"
}

// signedRequest is a request's signature, parsed but not yet verified.
type signedRequest struct {
	Scheme    authScheme
	AccessKey string
	v4        *sigV4
	v2        *sigV2
}

// verifyInput is what checking a signature needs besides the request.
type verifyInput struct {
	Secret string
	Now    time.Time
	Skew   time.Duration
}

// IncompleteSignature (400): the signature's fields are malformed or
// missing.
func incompleteSignature(format string, args ...any) *Error {
	return Errorf("IncompleteSignature", format, args...)
}

const v4Algorithm = "AWS4-HMAC-SHA256"

// parseSignature finds how the request was signed and parses the
// signature's fields; it does no crypto and needs no secret.
func parseSignature(w *wireRequest, q *parsedQuery) (*signedRequest, error) {
	if auth := w.Header.Get("Authorization"); auth != "" {
		if !strings.HasPrefix(auth, v4Algorithm+" ") {
			return nil, incompleteSignature("Unsupported Authorization header: only %s is accepted", v4Algorithm)
		}
		v4, err := parseV4Header(w, auth)
		if err != nil {
			return nil, err
		}
		return &signedRequest{Scheme: schemeV4Header, AccessKey: v4.AccessKey, v4: v4}, nil
	}
	if alg := q.URL.Get("X-Amz-Algorithm"); alg != "" {
		if alg != v4Algorithm {
			return nil, incompleteSignature("Unsupported X-Amz-Algorithm %q", alg)
		}
		v4, err := parseV4Query(q)
		if err != nil {
			return nil, err
		}
		return &signedRequest{Scheme: schemeV4Query, AccessKey: v4.AccessKey, v4: v4}, nil
	}
	if q.All.Has("Signature") || q.All.Has("SignatureVersion") {
		v2, err := parseV2(q)
		if err != nil {
			return nil, err
		}
		return &signedRequest{Scheme: schemeV2, AccessKey: v2.AccessKey, v2: v2}, nil
	}
	return nil, MissingParameter("AWSAccessKeyId")
}

// verify checks the signature with the caller's secret, then the time.
func (s *signedRequest) verify(w *wireRequest, q *parsedQuery, in verifyInput) error {
	switch s.Scheme {
	case schemeV4Header, schemeV4Query:
		return s.v4.verify(w, q, in)
	case schemeV2:
		return s.v2.verify(w, q, in)
	}
	return AuthFailure("AWS was not able to validate the provided access credentials")
}

func hmacSHA256(key []byte, data string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(data))
	return m.Sum(nil)
}

// headerValues is a header's values joined as Signature V4 wants them.
func headerValues(h http.Header, name string) (string, bool) {
	vs := h.Values(name)
	if len(vs) == 0 {
		return "", false
	}
	parts := make([]string, len(vs)) // vs is the header's own slice
	for i, v := range vs {
		parts[i] = strings.Join(strings.Fields(v), " ")
	}
	return strings.Join(parts, ","), true
}

// skewError answers a request whose time lies outside the window.
func skewError(signed, now time.Time, skew time.Duration) error {
	const f = "20060102T150405Z"
	mins := int(skew / time.Minute)
	if signed.Before(now) {
		return RequestExpired("Signature expired: %s is now earlier than %s (%s - %d min.)",
			signed.UTC().Format(f), now.Add(-skew).UTC().Format(f), now.UTC().Format(f), mins)
	}
	return RequestExpired("Signature not yet current: %s is still later than %s (%s + %d min.)",
		signed.UTC().Format(f), now.Add(skew).UTC().Format(f), now.UTC().Format(f), mins)
}

func outsideWindow(t, now time.Time, skew time.Duration) bool {
	d := now.Sub(t)
	return d > skew || d < -skew
}
