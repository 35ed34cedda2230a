package ec2

import (
	"mime"
	"net/http"
	"net/url"
	"strings"
)

// wireRequest is what the wire layer needs of an HTTP request, read off
// it once, so that parsing and signature checks are pure functions of it
// (and can be fuzzed and table-tested without a listener).
type wireRequest struct {
	Method        string
	Host          string // r.Host: the Host header as sent
	Path          string // the escaped path as sent
	RawQuery      string
	Header        http.Header
	Body          []byte
	ContentLength int64
}

func newWireRequest(r *http.Request, body []byte) *wireRequest {
	return &wireRequest{
		Method:        r.Method,
		Host:          r.Host,
		Path:          r.URL.EscapedPath(),
		RawQuery:      r.URL.RawQuery,
		Header:        r.Header,
		Body:          body,
		ContentLength: r.ContentLength,
	}
}

// parsedQuery holds a request's parameters: those of the URL and of a
// form body, and both merged (URL first).
type parsedQuery struct {
	URL  url.Values
	Form url.Values
	All  url.Values
}

// isForm reports whether a body is to be read as a form: the clients
// send application/x-www-form-urlencoded (with a charset); a POST with no
// Content-Type is read as a form too.
func isForm(contentType string) bool {
	if contentType == "" {
		return true
	}
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && mt == "application/x-www-form-urlencoded"
}

// parseQuery reads the parameters of a GET query or a form POST.
func parseQuery(w *wireRequest) (*parsedQuery, error) {
	q, err := url.ParseQuery(w.RawQuery)
	if err != nil {
		return nil, Errorf(CodeMalformedQueryString, "The query string is malformed: %s", queryErrText(err))
	}
	pq := &parsedQuery{URL: q, Form: url.Values{}, All: url.Values{}}
	if w.Method == http.MethodPost && len(w.Body) > 0 && isForm(w.Header.Get("Content-Type")) {
		f, err := url.ParseQuery(string(w.Body))
		if err != nil {
			return nil, Errorf(CodeMalformedQueryString, "The request body is malformed: %s", queryErrText(err))
		}
		pq.Form = f
	}
	for k, vs := range pq.URL {
		pq.All[k] = append(pq.All[k], vs...)
	}
	for k, vs := range pq.Form {
		pq.All[k] = append(pq.All[k], vs...)
	}
	return pq, nil
}

// queryErrText keeps a parse error's message short and free of the
// request's bytes beyond what the client sent anyway.
func queryErrText(err error) string {
	s := err.Error()
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}

// awsEscape is the URI encoding of Signature V4 and V2: every byte but
// A-Z a-z 0-9 - _ . ~ as %XX in upper case; '/' kept when keepSlash.
func awsEscape(s string, keepSlash bool) string {
	const hex = "0123456789ABCDEF"
	n := 0
	for i := 0; i < len(s); i++ {
		if !unreserved(s[i], keepSlash) {
			n++
		}
	}
	if n == 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 2*n)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if unreserved(c, keepSlash) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	return b.String()
}

func unreserved(c byte, keepSlash bool) bool {
	switch {
	case 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z', '0' <= c && c <= '9':
		return true
	case c == '-', c == '_', c == '.', c == '~':
		return true
	case c == '/':
		return keepSlash
	}
	return false
}
