package nodeapi

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Client is a node agent's connection to the controller's node API.
type Client struct {
	base string
	hc   *http.Client
	// desiredBytes, desiredMembers and desiredSpecs count what
	// desired-state answers carried: their bodies' bytes, the member
	// addresses in them (whole lists and deltas' changes), and the
	// instance specs sent whole.
	desiredBytes, desiredMembers, desiredSpecs atomic.Int64
}

// NewClient talks to the node API at base (https://HOST:PORT) with tlsConf
// (the node's certificate, the CA as roots; see internal/pki.ClientTLS, or
// PinnedTLS for enrollment).
func NewClient(base string, tlsConf *tls.Config) *Client {
	return NewClientFrom(base, tlsConf, nil)
}

// NewClientFrom is NewClient with connections made from a given local
// address (nil: any), as a machine with several addresses, or a load
// generator standing in for many nodes, needs.
func NewClientFrom(base string, tlsConf *tls.Config, local net.Addr) *Client {
	d := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second, LocalAddr: local}
	tr := &http.Transport{
		DialContext:         d.DialContext,
		TLSClientConfig:     tlsConf,
		TLSHandshakeTimeout: 10 * time.Second,
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     90 * time.Second,
		ForceAttemptHTTP2:   true,
	}
	return &Client{base: strings.TrimRight(base, "/"), hc: &http.Client{Transport: tr}}
}

// HTTP is the client's HTTP client, for blob downloads over the same mTLS.
func (c *Client) HTTP() *http.Client { return c.hc }

// Base is the controller URL the client talks to.
func (c *Client) Base() string { return c.base }

// Close drops idle connections.
func (c *Client) Close() { c.hc.CloseIdleConnections() }

// StatusError is a non-2xx answer.
type StatusError struct {
	Code    int
	Message string
}

func (e *StatusError) Error() string { return fmt.Sprintf("controller said %d: %s", e.Code, e.Message) }

// Enroll trades a token for a certificate. The client must use PinnedTLS.
func (c *Client) Enroll(ctx context.Context, req EnrollRequest) (EnrollResponse, error) {
	var resp EnrollResponse
	err := c.do(ctx, http.MethodPost, PathEnroll, req, &resp)
	return resp, err
}

// Heartbeat reports capacity and instance states.
func (c *Client) Heartbeat(ctx context.Context, req HeartbeatRequest) (HeartbeatResponse, error) {
	var resp HeartbeatResponse
	err := c.do(ctx, http.MethodPost, PathHeartbeat, req, &resp)
	return resp, err
}

// Instances returns the desired instances. With a non-empty etag the call
// waits up to wait for them to differ from that version. Member lists come
// whole.
func (c *Client) Instances(ctx context.Context, etag string, wait time.Duration) (Desired, error) {
	return c.InstancesHeld(ctx, etag, wait, nil)
}

// InstancesHeld is Instances for a node that keeps what it was sent in
// held: it says which member lists and instance specs it holds, the
// controller answers changed lists as deltas to them and lists unchanged
// specs by ID only, and held applies that, so the answer has every
// instance's whole spec and every group's whole member list. On
// ErrMembersBase or ErrSpecsBase (what held had could not be used: that
// part of held is then empty) the caller asks again, with no etag.
func (c *Client) InstancesHeld(ctx context.Context, etag string, wait time.Duration, held *Held) (Desired, error) {
	var d Desired
	if err := c.doCounted(ctx, http.MethodGet, instancesPath(etag, wait, held, false), nil, &d, &c.desiredBytes); err != nil {
		return d, err
	}
	if err := c.took(&d, held); err != nil {
		return Desired{}, err
	}
	return d, nil
}

// QueryStream asks PathInstances for a stream of answers
// (InstancesStream).
const QueryStream = "stream"

// InstancesStream is InstancesHeld as a stream: the controller answers
// every change of the desired state on the same response, one Desired per
// line, until wait has passed, and each is handed, whole as
// InstancesHeld's answer is, to got; it returns nil when the stream ended
// (the caller opens the next one with the last answer's etag) and got's
// error, a failure of the request or ErrMembersBase / ErrSpecsBase
// otherwise. A node woken many times a second (a peer group's members
// launching) thus costs the controller an answer each, not a request, an
// authentication and a parse of what it holds each. A controller that
// does not stream answers once, which reads as a stream of one answer.
func (c *Client) InstancesStream(ctx context.Context, etag string, wait time.Duration, held *Held, got func(Desired) error) error {
	opened := time.Now()
	resp, err := c.open(ctx, http.MethodGet, instancesPath(etag, wait, held, true), nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(&countingReader{r: resp.Body, n: &c.desiredBytes})
	for answers := 0; ; answers++ {
		var d Desired
		if err := dec.Decode(&d); err != nil {
			if errors.Is(err, io.EOF) {
				if answers == 0 && time.Since(opened) < wait/2 {
					// The controller ends a stream without an answer
					// only at the wait's end: whatever ended this one
					// (a proxy, a controller shutting down) must not
					// have the caller ask again at once, in a loop.
					return fmt.Errorf("GET %s: the stream ended after %s without an answer", PathInstances, time.Since(opened).Round(time.Millisecond))
				}
				return nil
			}
			return fmt.Errorf("GET %s: decode answer: %w", PathInstances, err)
		}
		if d.ETag == "" {
			// An error body, or not the node API: never an empty desired
			// state, which would stop every instance.
			return fmt.Errorf("GET %s: an answer without an etag", PathInstances)
		}
		if err := c.took(&d, held); err != nil {
			return err
		}
		if err := got(d); err != nil {
			return err
		}
	}
}

// instancesPath is PathInstances with its query: the wait with an etag
// (always, for a stream, which ends at its wait), and what held holds.
func instancesPath(etag string, wait time.Duration, held *Held, stream bool) string {
	q := url.Values{}
	if stream {
		q.Set(QueryStream, "1")
	}
	if etag != "" {
		q.Set("etag", etag)
	}
	if etag != "" || stream {
		q.Set("wait", strconv.Itoa(int(wait/time.Second)))
	}
	if held != nil {
		if v := held.Members.Query(); v != "" {
			q.Set(QueryMembers, v)
		}
		if v := held.Specs.Query(); v != "" {
			q.Set(QuerySpecs, v)
		}
	}
	return PathInstances + "?" + q.Encode()
}

// took counts an answer and applies it to held (nil: none).
func (c *Client) took(d *Desired, held *Held) error {
	n := 0
	for _, g := range d.SecurityGroups {
		n += len(g.Members)
		if g.MembersDelta != nil {
			n += len(g.MembersDelta.Added) + len(g.MembersDelta.Removed)
		}
	}
	c.desiredMembers.Add(int64(n))
	c.desiredSpecs.Add(int64(len(d.Instances)))
	if held != nil {
		if err := held.Members.Apply(d.SecurityGroups); err != nil {
			return fmt.Errorf("desired instances: %w", err)
		}
		if err := held.Specs.Apply(d); err != nil {
			return fmt.Errorf("desired instances: %w", err)
		}
	}
	return nil
}

// DesiredSent is what the desired-state answers the client read carried:
// bytes of their bodies (as sent), member addresses (of whole lists and of
// deltas) and whole instance specs, for measuring what a node is sent.
func (c *Client) DesiredSent() (bytes, members, specs int64) {
	return c.desiredBytes.Load(), c.desiredMembers.Load(), c.desiredSpecs.Load()
}

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	return c.doCounted(ctx, method, path, in, out, nil)
}

// doCounted is do, adding the answer's body bytes to count (nil: none).
func (c *Client) doCounted(ctx context.Context, method, path string, in, out any, count *atomic.Int64) error {
	resp, err := c.open(ctx, method, path, in)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var rd io.Reader = resp.Body
	if count != nil {
		rd = &countingReader{r: resp.Body, n: count}
	}
	if err := json.NewDecoder(rd).Decode(out); err != nil {
		return fmt.Errorf("%s %s: decode answer: %w", method, strings.SplitN(path, "?", 2)[0], err)
	}
	return nil
}

// open sends a call and returns its 2xx answer, whose body the caller
// reads and closes; any other answer is a StatusError.
func (c *Client) open(ctx context.Context, method, path string, in any) (*http.Response, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, strings.SplitN(path, "?", 2)[0], err)
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		var e Error
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		if json.Unmarshal(b, &e) != nil || e.Error == "" {
			e.Error = strings.TrimSpace(string(b))
		}
		return nil, &StatusError{Code: resp.StatusCode, Message: e.Error}
	}
	return resp, nil
}

// countingReader adds what it reads to n.
type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	k, err := c.r.Read(p)
	c.n.Add(int64(k))
	return k, err
}
