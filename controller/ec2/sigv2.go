package ec2

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"hash"
	"sort"
	"strings"
	"time"
)

// sigV2 is a parsed Signature V2 (SignatureVersion=2): fields in the form
// body or the query string, HmacSHA256 or HmacSHA1.
type sigV2 struct {
	AccessKey string
	Method    string // HmacSHA256 or HmacSHA1
	Signature []byte // nil when not base64: never matches
	Time      time.Time
	Expires   bool // Time is the Expires parameter, not Timestamp
}

func parseV2(q *parsedQuery) (*sigV2, error) {
	p := q.All
	if v := p.Get("SignatureVersion"); v != "2" {
		if v == "" {
			return nil, MissingParameter("SignatureVersion")
		}
		return nil, InvalidValue("SignatureVersion", truncate(v, 16), "Valid signature versions are 2 and 4.")
	}
	s := &sigV2{AccessKey: p.Get("AWSAccessKeyId"), Method: p.Get("SignatureMethod")}
	if s.AccessKey == "" {
		return nil, MissingParameter("AWSAccessKeyId")
	}
	switch s.Method {
	case "HmacSHA256", "HmacSHA1":
	case "":
		return nil, MissingParameter("SignatureMethod")
	default:
		return nil, InvalidValue("SignatureMethod", truncate(s.Method, 32), "Valid methods are HmacSHA256 and HmacSHA1.")
	}
	sig := p.Get("Signature")
	if sig == "" {
		return nil, MissingParameter("Signature")
	}
	s.Signature = decodeBase64Signature(sig)
	ts, exp := p.Get("Timestamp"), p.Get("Expires")
	switch {
	case ts != "" && exp != "":
		return nil, InvalidParameterCombination("The parameter Timestamp cannot be used with the parameter Expires")
	case ts != "":
		t, ok := parseV2Time(ts)
		if !ok {
			return nil, InvalidValue("Timestamp", truncate(ts, 64), "Expected an ISO 8601 time such as 2026-11-24T20:45:42Z.")
		}
		s.Time = t
	case exp != "":
		t, ok := parseV2Time(exp)
		if !ok {
			return nil, InvalidValue("Expires", truncate(exp, 64), "Expected an ISO 8601 time such as 2026-11-24T20:45:42Z.")
		}
		s.Time, s.Expires = t, true
	default:
		return nil, MissingParameter("Timestamp")
	}
	return s, nil
}

// decodeBase64Signature also accepts a signature whose '+' became a space
// on the way (a client that did not escape it in a URL).
func decodeBase64Signature(s string) []byte {
	if b, err := base64.StdEncoding.DecodeString(s); err == nil {
		return b
	}
	if b, err := base64.StdEncoding.DecodeString(strings.ReplaceAll(s, " ", "+")); err == nil {
		return b
	}
	return nil
}

// parseV2Time reads the ISO 8601 forms clients send: with or without
// fractional seconds, with Z or an offset, or with no zone (UTC).
func parseV2Time(s string) (time.Time, bool) {
	for _, f := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999", "2006-01-02T15:04:05.999999999Z0700"} {
		if t, err := time.Parse(f, s); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

// stringToSignV2 is Signature V2's string to sign for one Host value:
// method, host, path, then every parameter but Signature, sorted by name
// (bytes) and AWS-escaped.
func stringToSignV2(method, host, path string, q *parsedQuery) string {
	keys := make([]string, 0, len(q.All))
	for k := range q.All {
		if k != "Signature" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString(method)
	b.WriteByte('\n')
	b.WriteString(host)
	b.WriteByte('\n')
	if path == "" {
		path = "/"
	}
	b.WriteString(path)
	b.WriteByte('\n')
	first := true
	for _, k := range keys {
		vs := append([]string(nil), q.All[k]...)
		sort.Strings(vs)
		ek := awsEscape(k, false)
		for _, v := range vs {
			if !first {
				b.WriteByte('&')
			}
			first = false
			b.WriteString(ek)
			b.WriteByte('=')
			b.WriteString(awsEscape(v, false))
		}
	}
	return b.String()
}

func (s *sigV2) verify(w *wireRequest, q *parsedQuery, in verifyInput) error {
	var h func() hash.Hash = sha256.New
	if s.Method == "HmacSHA1" {
		h = sha1.New
	}
	host := strings.ToLower(w.Host)
	hosts := []string{host}
	if hn, _, ok := splitPort(host); ok {
		hosts = append(hosts, hn) // boto2 signs the host without its port
	}
	ok := false
	for _, hv := range hosts {
		m := hmac.New(h, []byte(in.Secret))
		m.Write([]byte(stringToSignV2(w.Method, hv, w.Path, q)))
		if s.Signature != nil && hmac.Equal(m.Sum(nil), s.Signature) {
			ok = true
		}
	}
	if !ok {
		return SignatureDoesNotMatch()
	}
	const f = "2006-01-02T15:04:05Z"
	if s.Expires {
		if in.Now.After(s.Time) {
			return RequestExpired("Request has expired. Expires date is %s", s.Time.UTC().Format(f))
		}
		// An Expires far ahead would make a captured request replayable
		// for as long: like AWS, accept at most the clock skew window
		// (15 minutes) past now.
		if s.Time.Sub(in.Now) > in.Skew {
			return RequestExpired("Request expiration %s is more than %d minutes in the future", s.Time.UTC().Format(f), int(in.Skew/time.Minute))
		}
		return nil
	}
	if outsideWindow(s.Time, in.Now, in.Skew) {
		if s.Time.Before(in.Now) {
			return RequestExpired("Request has expired. Timestamp date is %s", s.Time.UTC().Format(f))
		}
		return RequestExpired("Request timestamp %s is more than %d minutes in the future", s.Time.UTC().Format(f), int(in.Skew/time.Minute))
	}
	return nil
}
