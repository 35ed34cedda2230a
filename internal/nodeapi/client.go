package nodeapi

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Client is a node agent's connection to the controller's node API.
type Client struct {
	base string
	hc   *http.Client
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
// waits up to wait for them to differ from that version.
func (c *Client) Instances(ctx context.Context, etag string, wait time.Duration) (Desired, error) {
	q := url.Values{}
	if etag != "" {
		q.Set("etag", etag)
		q.Set("wait", strconv.Itoa(int(wait/time.Second)))
	}
	var d Desired
	err := c.do(ctx, http.MethodGet, PathInstances+"?"+q.Encode(), nil, &d)
	return d, err
}

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, strings.SplitN(path, "?", 2)[0], err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		var e Error
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		if json.Unmarshal(b, &e) != nil || e.Error == "" {
			e.Error = strings.TrimSpace(string(b))
		}
		return &StatusError{Code: resp.StatusCode, Message: e.Error}
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
	}
	return nil
}
