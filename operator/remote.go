package operator

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"ironbark/controller/ec2"
	"ironbark/tui"
)

// Remote is a frontend's dashboard over its EC2 endpoint, signed with
// the cloud administrator's access key.
type Remote struct {
	Endpoint  string // the EC2 URL, https://frontend:8773/
	AccessKey string
	SecretKey string
	Region    string // "" is "ironbark"; the server does not check it
	Client    *http.Client
}

// Credentials are what a credentials dir (DATA/credentials/admin, as the
// frontend writes it) says: the keys, and the endpoint and CA when the
// dir has them.
type Credentials struct {
	AccessKey, SecretKey string
	Endpoint             string
	CAPEM                []byte
}

// LoadCredentials reads a credentials dir: its `credentials` file (the
// AWS shared-credentials form), eucarc for the endpoint, ca.pem.
func LoadCredentials(dir string) (Credentials, error) {
	var c Credentials
	b, err := os.ReadFile(filepath.Join(dir, "credentials"))
	if err != nil {
		return c, fmt.Errorf("admin credentials: %w", err)
	}
	for sc := bufio.NewScanner(bytes.NewReader(b)); sc.Scan(); {
		k, v, _ := strings.Cut(sc.Text(), "=")
		switch strings.TrimSpace(k) {
		case "aws_access_key_id":
			c.AccessKey = strings.TrimSpace(v)
		case "aws_secret_access_key":
			c.SecretKey = strings.TrimSpace(v)
		}
	}
	if c.AccessKey == "" || c.SecretKey == "" {
		return c, fmt.Errorf("admin credentials: no aws_access_key_id and aws_secret_access_key in %s", filepath.Join(dir, "credentials"))
	}
	if b, err := os.ReadFile(filepath.Join(dir, "eucarc")); err == nil {
		for sc := bufio.NewScanner(bytes.NewReader(b)); sc.Scan(); {
			l := strings.TrimPrefix(strings.TrimSpace(sc.Text()), "export ")
			if v, ok := strings.CutPrefix(l, "EC2_URL="); ok {
				c.Endpoint = strings.Trim(v, `'"`)
			}
		}
	}
	if b, err := os.ReadFile(filepath.Join(dir, "ca.pem")); err == nil {
		c.CAPEM = b
	}
	return c, nil
}

// NewRemote is a Remote for endpoint ("" is the credentials' own) that
// trusts the credentials' CA (the system's roots when it has none).
func NewRemote(endpoint string, c Credentials) (*Remote, error) {
	if endpoint == "" {
		endpoint = c.Endpoint
	}
	if endpoint == "" {
		return nil, errors.New("no endpoint: give one (https://FRONTEND:8773/) or a credentials dir whose eucarc has EC2_URL")
	}
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("endpoint %q: want https://HOST:PORT/", endpoint)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if c.CAPEM != nil {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(c.CAPEM) {
			return nil, errors.New("admin credentials: ca.pem holds no certificate")
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool}
	}
	return &Remote{Endpoint: endpoint, AccessKey: c.AccessKey, SecretKey: c.SecretKey,
		Client: &http.Client{Transport: tr, Timeout: 30 * time.Second}}, nil
}

// call signs and sends one admin action and decodes its JSON answer
// into out (nil: ignore it).
func (r *Remote) call(ctx context.Context, action string, params url.Values, out any) error {
	u, err := url.Parse(r.Endpoint)
	if err != nil {
		return err
	}
	u.Path, u.RawQuery = ec2.AdminPath, ""
	form := url.Values{"Action": {action}, "Version": {"2016-11-15"}}
	for k, v := range params {
		form[k] = v
	}
	body := form.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
	sum := sha256.Sum256([]byte(body))
	region := r.Region
	if region == "" {
		region = "ironbark"
	}
	creds := aws.Credentials{AccessKeyID: r.AccessKey, SecretAccessKey: r.SecretKey}
	if err := v4.NewSigner().SignHTTP(ctx, creds, req, hex.EncodeToString(sum[:]), "ec2", region, time.Now()); err != nil {
		return fmt.Errorf("sign %s: %w", action, err)
	}
	resp, err := r.Client.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %w", action, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("%s: %w", action, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Errors struct {
				Error struct{ Code, Message string }
			}
		}
		if xml.Unmarshal(b, &e) == nil && e.Errors.Error.Code != "" {
			return fmt.Errorf("%s: %s: %s", action, e.Errors.Error.Code, e.Errors.Error.Message)
		}
		return fmt.Errorf("%s: HTTP %d: %.200s", action, resp.StatusCode, b)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("%s: the answer: %w", action, err)
	}
	return nil
}

// Snapshot is the remote frontend's dashboard view.
func (r *Remote) Snapshot(ctx context.Context) (tui.Snapshot, error) {
	var s tui.Snapshot
	err := r.call(ctx, ActionDescribeDashboard, nil, &s)
	return s, err
}

// AddCluster adds a cluster on the remote frontend.
func (r *Remote) AddCluster(ctx context.Context, name string) error {
	return r.call(ctx, ActionCreateCluster, url.Values{"Name": {name}}, nil)
}

// Reinstall makes a host of the remote frontend install at its next boot.
func (r *Remote) Reinstall(ctx context.Context, host string) error {
	return r.call(ctx, ActionReinstallHost, url.Values{"Host": {host}}, nil)
}

// SetDrained drains or undrains a node of the remote frontend.
func (r *Remote) SetDrained(ctx context.Context, node string, drained bool) error {
	return r.call(ctx, ActionSetNodeDrained, url.Values{"Node": {node}, "Drained": {strconv.FormatBool(drained)}}, nil)
}
