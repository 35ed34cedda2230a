package ec2

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// amzDateFormat is Signature V4's ISO 8601 basic time.
const amzDateFormat = "20060102T150405Z"

// maxPresignExpires is Signature V4's limit on X-Amz-Expires: 7 days.
const maxPresignExpires = 7 * 24 * time.Hour

const unsignedPayload = "UNSIGNED-PAYLOAD"

// sigV4 is a parsed Signature V4, from the Authorization header or from
// the query string (presigned).
type sigV4 struct {
	AccessKey        string
	Date             string // the credential scope's YYYYMMDD
	Region, Service  string // as sent; never checked (euca2ools sends "undefined-<pid>")
	SignedHeaders    []string
	SignedHeadersRaw string
	Signature        []byte // nil when not hex: never matches
	AmzDate          string // the request time as the string to sign has it
	Time             time.Time
	Presigned        bool
	Expires          time.Duration // presigned only
}

func (s *sigV4) scope() string {
	return s.Date + "/" + s.Region + "/" + s.Service + "/aws4_request"
}

func parseV4Header(w *wireRequest, auth string) (*sigV4, error) {
	fields := map[string]string{}
	for _, f := range strings.Split(auth[len(v4Algorithm)+1:], ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(f), "=")
		if !ok {
			return nil, incompleteSignature("Authorization header is malformed: %q is not key=value", truncate(f, 64))
		}
		fields[k] = v
	}
	for _, need := range []string{"Credential", "SignedHeaders", "Signature"} {
		if fields[need] == "" {
			return nil, incompleteSignature("Authorization header requires '%s' parameter. Authorization=%s", need, truncate(auth, 256))
		}
	}
	s := &sigV4{}
	if err := s.parseCredential(fields["Credential"]); err != nil {
		return nil, err
	}
	s.parseSignedHeaders(fields["SignedHeaders"])
	s.Signature = decodeHexSignature(fields["Signature"])
	if d := w.Header.Get("X-Amz-Date"); d != "" {
		t, err := time.Parse(amzDateFormat, d)
		if err != nil {
			return nil, incompleteSignature("X-Amz-Date %q is not in ISO 8601 basic format (YYYYMMDD'T'HHMMSS'Z')", truncate(d, 64))
		}
		s.AmzDate, s.Time = d, t
	} else if d := w.Header.Get("Date"); d != "" {
		t, err := http.ParseTime(d)
		if err != nil {
			return nil, incompleteSignature("Date header %q is not an HTTP date", truncate(d, 64))
		}
		s.AmzDate, s.Time = t.UTC().Format(amzDateFormat), t
	} else {
		return nil, incompleteSignature("Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.")
	}
	return s, nil
}

func parseV4Query(q *parsedQuery) (*sigV4, error) {
	for _, need := range []string{"X-Amz-Credential", "X-Amz-Date", "X-Amz-SignedHeaders", "X-Amz-Signature"} {
		if q.URL.Get(need) == "" {
			return nil, MissingParameter(need)
		}
	}
	s := &sigV4{Presigned: true, Expires: maxPresignExpires}
	if err := s.parseCredential(q.URL.Get("X-Amz-Credential")); err != nil {
		return nil, err
	}
	s.parseSignedHeaders(q.URL.Get("X-Amz-SignedHeaders"))
	s.Signature = decodeHexSignature(q.URL.Get("X-Amz-Signature"))
	d := q.URL.Get("X-Amz-Date")
	t, err := time.Parse(amzDateFormat, d)
	if err != nil {
		return nil, InvalidValue("X-Amz-Date", truncate(d, 64), "Expected ISO 8601 basic format (YYYYMMDD'T'HHMMSS'Z').")
	}
	s.AmzDate, s.Time = d, t
	if e := q.URL.Get("X-Amz-Expires"); e != "" {
		n, err := strconv.ParseInt(e, 10, 64)
		if err != nil || n < 1 || n > int64(maxPresignExpires/time.Second) {
			return nil, InvalidValue("X-Amz-Expires", truncate(e, 64), "Must be between 1 and 604800 seconds.")
		}
		s.Expires = time.Duration(n) * time.Second
	}
	return s, nil
}

// parseCredential reads AKID/YYYYMMDD/region/service/aws4_request.
func (s *sigV4) parseCredential(c string) error {
	parts := strings.Split(c, "/")
	if len(parts) != 5 || parts[0] == "" || parts[4] != "aws4_request" || len(parts[1]) != 8 {
		return incompleteSignature("Credential should be scoped correctly: AKID/YYYYMMDD/region/service/aws4_request, not %q", truncate(c, 128))
	}
	for i := 0; i < 8; i++ {
		if parts[1][i] < '0' || parts[1][i] > '9' {
			return incompleteSignature("Credential scope date %q is not YYYYMMDD", parts[1])
		}
	}
	s.AccessKey, s.Date, s.Region, s.Service = parts[0], parts[1], parts[2], parts[3]
	return nil
}

func (s *sigV4) parseSignedHeaders(raw string) {
	s.SignedHeadersRaw = raw
	s.SignedHeaders = strings.Split(raw, ";")
}

func decodeHexSignature(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != sha256.Size {
		return nil
	}
	return b
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// signingKey derives the V4 key from the scope as the client sent it.
func (s *sigV4) signingKey(secret string) []byte {
	k := hmacSHA256([]byte("AWS4"+secret), s.Date)
	k = hmacSHA256(k, s.Region)
	k = hmacSHA256(k, s.Service)
	return hmacSHA256(k, "aws4_request")
}

func (s *sigV4) verify(w *wireRequest, q *parsedQuery, in verifyInput) error {
	if s.Date != s.AmzDate[:8] {
		e := SignatureDoesNotMatch()
		e.Message = "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '" +
			s.Date + "' != '" + s.AmzDate[:8] + "'"
		return e
	}
	signsHost := false
	for _, h := range s.SignedHeaders {
		if h == "host" {
			signsHost = true
		}
	}
	if !signsHost {
		e := SignatureDoesNotMatch()
		e.Message = "'Host' must be a signed header"
		return e
	}
	bodySum := sha256.Sum256(w.Body)
	bodyHash := hex.EncodeToString(bodySum[:])
	payloads := []string{bodyHash}
	if h := w.Header.Get("X-Amz-Content-Sha256"); h != "" {
		if h != unsignedPayload && !strings.EqualFold(h, bodyHash) {
			e := SignatureDoesNotMatch()
			e.Message = "The provided 'x-amz-content-sha256' header does not match what was computed."
			return e
		}
		payloads = []string{strings.ToLower(h)}
		if h == unsignedPayload {
			payloads = []string{unsignedPayload}
		}
	} else if s.Presigned {
		payloads = append(payloads, unsignedPayload)
	}

	key := s.signingKey(in.Secret)
	query := canonicalQueryV4(w.RawQuery, s.Presigned)
	uri := awsEscape(w.Path, true)
	if uri == "" {
		uri = "/"
	}
	ok := false
	for _, host := range hostCandidatesV4(w.Host) {
		headers := s.canonicalHeaders(w, host)
		for _, payload := range payloads {
			creq := w.Method + "\n" + uri + "\n" + query + "\n" + headers + "\n" + s.SignedHeadersRaw + "\n" + payload
			sum := sha256.Sum256([]byte(creq))
			sts := v4Algorithm + "\n" + s.AmzDate + "\n" + s.scope() + "\n" + hex.EncodeToString(sum[:])
			if s.Signature != nil && hmac.Equal(hmacSHA256(key, sts), s.Signature) {
				ok = true
			}
		}
	}
	if !ok {
		return SignatureDoesNotMatch()
	}
	if s.Presigned {
		if s.Time.Sub(in.Now) > in.Skew {
			return skewError(s.Time, in.Now, in.Skew)
		}
		if in.Now.After(s.Time.Add(s.Expires)) {
			return RequestExpired("Request has expired: signed at %s, valid for %d seconds",
				s.AmzDate, int64(s.Expires/time.Second))
		}
		return nil
	}
	if outsideWindow(s.Time, in.Now, in.Skew) {
		return skewError(s.Time, in.Now, in.Skew)
	}
	return nil
}

// canonicalHeaders lists exactly the signed headers, as the client named
// them, each "name:value\n".
func (s *sigV4) canonicalHeaders(w *wireRequest, host string) string {
	var b strings.Builder
	for _, name := range s.SignedHeaders {
		var v string
		switch name {
		case "host":
			v = host
		case "content-length":
			if hv, ok := headerValues(w.Header, name); ok {
				v = hv
			} else if w.ContentLength >= 0 {
				v = strconv.FormatInt(w.ContentLength, 10)
			}
		default:
			v, _ = headerValues(w.Header, name)
		}
		b.WriteString(name)
		b.WriteByte(':')
		b.WriteString(v)
		b.WriteByte('\n')
	}
	return b.String()
}

// hostCandidatesV4: the Host header as sent, then without its port (an
// older client may sign the host name alone).
func hostCandidatesV4(host string) []string {
	out := []string{host}
	if h, _, ok := splitPort(host); ok {
		out = append(out, h)
	}
	return out
}

// splitPort splits "host:port" and "[v6]:port"; ok is false without a
// port.
func splitPort(hostport string) (host, port string, ok bool) {
	i := strings.LastIndexByte(hostport, ':')
	if i < 0 || strings.HasSuffix(hostport, "]") {
		return hostport, "", false
	}
	if strings.HasPrefix(hostport, "[") != strings.HasSuffix(hostport[:i], "]") {
		return hostport, "", false // a bare IPv6 address
	}
	return hostport[:i], hostport[i+1:], true
}

// canonicalQueryV4 re-encodes the raw query string as Signature V4
// wants it: each name and value decoded then AWS-escaped, sorted by name
// then value; X-Amz-Signature left out of a presigned request.
func canonicalQueryV4(raw string, presigned bool) string {
	if raw == "" {
		return ""
	}
	type kv struct{ k, v string }
	var kvs []kv
	for _, part := range strings.Split(raw, "&") {
		if part == "" {
			continue
		}
		k, v, _ := strings.Cut(part, "=")
		if dk, err := url.QueryUnescape(k); err == nil {
			k = dk
		}
		if dv, err := url.QueryUnescape(v); err == nil {
			v = dv
		}
		if presigned && k == "X-Amz-Signature" {
			continue
		}
		kvs = append(kvs, kv{awsEscape(k, false), awsEscape(v, false)})
	}
	sort.Slice(kvs, func(i, j int) bool {
		if kvs[i].k != kvs[j].k {
			return kvs[i].k < kvs[j].k
		}
		return kvs[i].v < kvs[j].v
	})
	var b strings.Builder
	for i, p := range kvs {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(p.k)
		b.WriteByte('=')
		b.WriteString(p.v)
	}
	return b.String()
}
