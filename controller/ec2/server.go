package ec2

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
)

// Defaults of Config.
const (
	DefaultMaxBodyBytes = 1 << 20
	DefaultClockSkew    = 15 * time.Minute
)

// MaxHeaderBytes is what an http.Server serving the EC2 API should set as
// its MaxHeaderBytes: room for a query string past MaxBodyBytes, so that
// the Server answers it in EC2's XML (RequestEntityTooLarge) rather than
// net/http with a plain-text 431 that no EC2 client can read.
const MaxHeaderBytes = 4 << 20

// Config is what a Server needs.
type Config struct {
	Handler     Handler
	Credentials CredentialStore
	Logger      *slog.Logger // nil: slog.Default()

	// MaxBodyBytes limits a request body (default 1 MiB); larger ones get
	// 413 RequestEntityTooLarge.
	MaxBodyBytes int64
	// ClockSkew is how far a signed request's time may lie from Now
	// (default 15 minutes, as AWS).
	ClockSkew time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
	// TokenKey signs NextToken values. Controllers that share a store
	// should share it; when empty, each Server draws a random one (tokens
	// then do not survive a restart).
	TokenKey []byte
	// Admin, when set, answers the cloud administrator's actions at
	// AdminPath (as Eucalyptus served its administrative services beside
	// EC2): the same Query API and signatures, callers other than the
	// administrator refused, answers in JSON.
	Admin Handler
}

// AdminPath is where Config.Admin answers.
const AdminPath = "/services/Admin"

// Server is the EC2 endpoint: an http.Handler answering at /,
// /services/compute and /services/Eucalyptus (with or without a trailing
// slash).
type Server struct {
	h        Handler
	admin    Handler
	creds    CredentialStore
	log      *slog.Logger
	maxBody  int64
	skew     time.Duration
	now      func() time.Time
	tokenKey []byte
	enc      responseEncoder
}

// NewServer makes a Server from cfg, filling in defaults.
func NewServer(cfg Config) *Server {
	s := &Server{
		h: cfg.Handler, admin: cfg.Admin, creds: cfg.Credentials, log: cfg.Logger,
		maxBody: cfg.MaxBodyBytes, skew: cfg.ClockSkew, now: cfg.Now, tokenKey: cfg.TokenKey,
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.maxBody <= 0 {
		s.maxBody = DefaultMaxBodyBytes
	}
	if s.skew <= 0 {
		s.skew = DefaultClockSkew
	}
	if s.now == nil {
		s.now = time.Now
	}
	if len(s.tokenKey) == 0 {
		s.tokenKey = make([]byte, 32)
		if _, err := rand.Read(s.tokenKey); err != nil {
			panic("ec2: no randomness for the NextToken key: " + err.Error())
		}
	}
	return s
}

// IsEndpointPath reports whether path is one the EC2 endpoint answers at.
func IsEndpointPath(path string) bool {
	switch path {
	case "", "/", "/services/compute", "/services/compute/", "/services/Eucalyptus", "/services/Eucalyptus/":
		return true
	}
	return false
}

// outcome is what one request came to, for the log line.
type outcome struct {
	action    string
	account   string
	scheme    authScheme
	accessKey string
	status    int
	code      string
	err       error // the cause of an InternalError, logged, never sent
	body      []byte
	json      bool // an admin answer
}

// ServeHTTP answers one EC2 call and logs a line for it.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now() // the real clock: Config.Now may be a fixed test time
	id := newRequestID()
	out := s.serve(w, r, id)
	level := slog.LevelInfo
	switch {
	case out.status >= 500:
		level = slog.LevelError
	case out.status == http.StatusUnauthorized || out.status == http.StatusForbidden:
		level = slog.LevelWarn
	}
	attrs := []slog.Attr{
		slog.String("request_id", id),
		slog.String("action", out.action),
		slog.String("account", out.account),
		slog.Int("status", out.status),
		slog.Duration("duration", time.Since(start)),
		slog.String("remote", r.RemoteAddr),
		slog.String("auth", out.scheme.String()),
	}
	if out.accessKey != "" {
		attrs = append(attrs, slog.String("access_key", out.accessKey))
	}
	if out.code != "" {
		attrs = append(attrs, slog.String("code", out.code))
	}
	if out.err != nil {
		attrs = append(attrs, slog.String("error", out.err.Error()))
	}
	// Log before answering, so that whoever got the answer finds the line.
	s.log.LogAttrs(r.Context(), level, "ec2 request", attrs...)
	if out.json {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(out.body)))
		w.Header().Set("x-amzn-RequestId", id)
		w.WriteHeader(out.status)
		_, _ = w.Write(out.body)
		return
	}
	writeXML(w, out.status, out.body, id)
}

// serve works out the answer to r; it writes nothing but headers.
func (s *Server) serve(w http.ResponseWriter, r *http.Request, id string) (out outcome) {
	errNS := "" // STS's or IAM's namespace: answer errors in their envelope (see sts.go, iam.go)
	fail := func(err error) outcome {
		e := AsError(err)
		if e.Code == CodeInternalError && !errors.As(err, new(*Error)) {
			out.err = err
		}
		out.status, out.code = e.Status, e.Code
		if errNS != "" {
			out.body = marshalQueryError(errNS, e, id)
		} else {
			out.body = MarshalError(e, id)
		}
		return out
	}
	admin := s.admin != nil && strings.TrimSuffix(r.URL.Path, "/") == AdminPath
	if !IsEndpointPath(r.URL.Path) && !admin {
		return fail(&Error{Code: "NotFound", Status: http.StatusNotFound,
			Message: fmt.Sprintf("There is no EC2 endpoint at %s: use /, /services/compute or /services/Eucalyptus", truncate(r.URL.Path, 128))})
	}
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		w.Header().Set("Allow", "GET, POST")
		return fail(&Error{Code: "MethodNotAllowed", Status: http.StatusMethodNotAllowed,
			Message: "The EC2 Query API takes GET and POST requests"})
	}
	if int64(len(r.URL.RawQuery)) > s.maxBody {
		return fail(&Error{Code: CodeRequestEntityTooLarge, Status: http.StatusRequestEntityTooLarge,
			Message: fmt.Sprintf("The query string is larger than %d bytes", s.maxBody)})
	}
	body, err := s.readBody(w, r)
	if err != nil {
		return fail(err)
	}
	wr := newWireRequest(r, body)
	q, err := parseQuery(wr)
	if err != nil {
		return fail(err)
	}
	out.action = truncate(q.All.Get("Action"), 64)
	switch q.All.Get("Version") {
	case STSVersion:
		errNS = STSNamespace
	case IAMVersion:
		errNS = IAMNamespace
	}

	sig, err := parseSignature(wr, q)
	if err != nil {
		return fail(err)
	}
	out.scheme, out.accessKey = sig.Scheme, sig.AccessKey
	if sig.v4 != nil && sig.v4.Service == "sts" {
		errNS = STSNamespace
	} else if sig.v4 != nil && sig.v4.Service == "iam" {
		errNS = IAMNamespace
	}
	secret, principal, err := s.creds.LookupAccessKey(r.Context(), sig.AccessKey)
	if errors.Is(err, ErrUnknownAccessKey) {
		// Unknown, deactivated, or its account disabled: EC2 says
		// AuthFailure, STS and IAM InvalidClientTokenId, and none says which.
		if errNS != "" {
			return fail(&Error{Code: CodeInvalidClientTokenID, Status: http.StatusForbidden,
				Message: "The security token included in the request is invalid."})
		}
		return fail(AuthFailure("AWS was not able to validate the provided access credentials"))
	}
	if err != nil {
		out.err = fmt.Errorf("look up access key %s: %w", sig.AccessKey, err)
		return fail(out.err)
	}
	if err := sig.verify(wr, q, verifyInput{Secret: secret, Now: s.now(), Skew: s.skew}); err != nil {
		return fail(err)
	}
	if principal.AccessKey == "" {
		principal.AccessKey = sig.AccessKey
	}
	out.account = principal.AccountID

	req, err := newRequest(q, principal, id, remoteIP(r.RemoteAddr), s.tokenKey)
	if err != nil {
		return fail(err)
	}
	req.Path = r.URL.Path
	if sig.v4 != nil {
		req.Service = sig.v4.Service
	}
	if admin {
		if !principal.Admin {
			return fail(&Error{Code: "UnauthorizedOperation", Status: http.StatusForbidden,
				Message: "Only the cloud administrator may call " + AdminPath})
		}
		resp, err := s.admin.ServeEC2(r.Context(), req)
		if err != nil {
			return fail(err)
		}
		if out.body, err = json.Marshal(resp); err != nil {
			return fail(err)
		}
		out.status, out.json = http.StatusOK, true
		return out
	}
	ns := STSNamespace
	switch {
	case req.IsSTS():
	case req.IsIAM():
		ns = IAMNamespace
	default:
		if ns, err = Namespace(req.Version); err != nil {
			return fail(err)
		}
	}
	resp, err := s.dispatch(r.Context(), req)
	if err != nil {
		return fail(err)
	}
	b, err := s.enc.marshal(req.Action, ns, id, resp)
	if err != nil {
		return fail(err)
	}
	out.status, out.body = http.StatusOK, b
	return out
}

// readBody reads at most maxBody bytes of the body; more is
// RequestEntityTooLarge.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	tooLarge := &Error{Code: CodeRequestEntityTooLarge, Status: http.StatusRequestEntityTooLarge,
		Message: fmt.Sprintf("The request body is larger than %d bytes", s.maxBody)}
	if r.ContentLength > s.maxBody {
		return nil, tooLarge
	}
	if r.Body == nil { // only a client-side request (tests) has none
		return nil, nil
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.maxBody))
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return nil, tooLarge
	}
	if err != nil {
		return nil, Errorf("IncompleteBody", "The request body could not be read: %v", err)
	}
	return body, nil
}

// newRequest builds the Request for the Handler from a verified query.
func newRequest(q *parsedQuery, p Principal, id, sourceIP string, tokenKey []byte) (*Request, error) {
	action := q.All.Get("Action")
	if action == "" {
		return nil, MissingParameter("Action")
	}
	if !validActionName(action) {
		return nil, InvalidAction(truncate(action, 64))
	}
	params := make(map[string][]string, len(q.All))
	for k, vs := range q.All {
		if isSignatureParam(k) {
			continue
		}
		for _, v := range append([]string{k}, vs...) {
			if !storableText(v) {
				return nil, InvalidParameterValue("Value for parameter %s contains invalid UTF-8 or a character XML cannot carry", truncate(strings.ToValidUTF8(k, "?"), 128))
			}
		}
		params[k] = vs
	}
	return &Request{
		Action:    action,
		Version:   q.All.Get("Version"),
		Params:    params,
		Principal: p,
		RequestID: id,
		SourceIP:  sourceIP,
		pageKey:   tokenKey,
	}, nil
}

// storableText reports whether s is valid UTF-8 of characters XML 1.0
// can carry (tab, newline, carriage return and U+0020 up, less the
// surrogates and U+FFFE/U+FFFF). Anything else would be stored and then
// answered altered (encoding/xml replaces it), so it is refused up front.
func storableText(s string) bool {
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		i += size
		switch {
		case r == utf8.RuneError && size == 1:
			return false // invalid UTF-8
		case r == '\t' || r == '\n' || r == '\r':
		case r < 0x20, r == 0xFFFE, r == 0xFFFF:
			return false // (DecodeRune never returns a surrogate)
		}
	}
	return true
}

// validActionName admits the shape of EC2 action names: the name becomes
// an XML element, so nothing else may pass.
func validActionName(a string) bool {
	if len(a) == 0 || len(a) > 64 || a[0] < 'A' || a[0] > 'Z' {
		return false
	}
	for i := 1; i < len(a); i++ {
		c := a[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

// dispatch runs the Handler; a panic becomes an InternalError.
func (s *Server) dispatch(ctx context.Context, req *Request) (resp any, err error) {
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			s.log.ErrorContext(ctx, "ec2 handler panic", "request_id", req.RequestID, "action", req.Action,
				"panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			resp, err = nil, fmt.Errorf("%s: panic: %v", req.Action, v)
		}
	}()
	return s.h.ServeEC2(ctx, req)
}

func writeXML(w http.ResponseWriter, status int, body []byte, id string) {
	h := w.Header()
	h.Set("Content-Type", "text/xml;charset=UTF-8")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("x-amzn-RequestId", id)
	w.WriteHeader(status)
	_, _ = w.Write(body) // the client went away: nothing to do
}

func remoteIP(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return host
}

// newRequestID makes a random (version 4) UUID, as EC2's request ids are.
func newRequestID() string { return uuid.NewString() }
