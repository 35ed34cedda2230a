package ec2

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"ironbark/internal/lab"
	"ironbark/internal/pki"
)

// liveTLSServer is liveServer over HTTPS, with a certificate from a cloud
// CA as the controller serves it, and the path of the CA bundle that
// users get (AWS_CA_BUNDLE, ca_bundle).
func liveTLSServer(t *testing.T) (*httptest.Server, *fixture, string) {
	t.Helper()
	f := newFixture(t, nil)
	dir := t.TempDir()
	ca, err := pki.LoadOrCreateCA(filepath.Join(dir, "pki"))
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.ServerCertificate(nil) // localhost, 127.0.0.1, ::1
	if err != nil {
		t.Fatal(err)
	}
	bundle := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(bundle, ca.CertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewUnstartedServer(f.srv)
	ts.TLS = &tls.Config{Certificates: []tls.Certificate{ca.ServerChain(cert)}}
	ts.StartTLS()
	t.Cleanup(ts.Close)
	return ts, f, bundle
}

// findAWSCLI returns the path of an `aws` whose --version starts with
// prefix ("aws-cli/1." or "aws-cli/2."), among candidates, or "".
func findAWSCLI(t *testing.T, prefix string, candidates ...string) string {
	t.Helper()
	for _, c := range candidates {
		p, err := exec.LookPath(c)
		if err != nil {
			continue
		}
		out, err := exec.Command(p, "--version").CombinedOutput()
		if err == nil && strings.HasPrefix(string(out), prefix) {
			return p
		}
	}
	return ""
}

// runAWS runs the AWS CLI against endpoint with explicit credentials and
// nothing from the environment that could reach a real AWS (or the
// instance metadata address).
func runAWS(t *testing.T, cli, endpoint, bundle, ak, secret string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	home := t.TempDir()
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") && !strings.HasPrefix(kv, "HOME=") {
			env = append(env, kv)
		}
	}
	env = append(env,
		"HOME="+home,
		"AWS_ACCESS_KEY_ID="+ak,
		"AWS_SECRET_ACCESS_KEY="+secret,
		"AWS_EC2_METADATA_DISABLED=true",
		"AWS_PAGER=",
		"AWS_CONFIG_FILE="+filepath.Join(home, "no-config"),
		"AWS_SHARED_CREDENTIALS_FILE="+filepath.Join(home, "no-credentials"),
		"AWS_MAX_ATTEMPTS=1",
		"AWS_CA_BUNDLE="+bundle,
	)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	full := append([]string{"--endpoint-url", endpoint, "--region", "us-east-1", "--output", "json"}, args...)
	cmd := exec.CommandContext(ctx, cli, full...)
	cmd.Env = env
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

// testAWSCLI drives the server over HTTPS, verified with the CA bundle
// from AWS_CA_BUNDLE as a user's eucarc sets it.
func testAWSCLI(t *testing.T, cli string) {
	ts, _, bundle := liveTLSServer(t)
	for _, path := range []string{"/services/compute"} { // the SDK test covers the other paths
		out, stderr, err := runAWS(t, cli, ts.URL+path, bundle, testAK, testSecret, "ec2", "describe-regions")
		if err != nil {
			t.Fatalf("describe-regions at %q: %v\n%s", path, err, stderr)
		}
		var got struct {
			Regions []struct{ RegionName, Endpoint, OptInStatus string }
		}
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatalf("output %q: %v", out, err)
		}
		if len(got.Regions) != 2 || got.Regions[1].RegionName != "ironbark-west" || got.Regions[0].OptInStatus != "opt-in-not-required" {
			t.Errorf("regions: %s", out)
		}
	}

	out, stderr, err := runAWS(t, cli, ts.URL, bundle, testAK, testSecret, "ec2", "describe-regions", "--region-names", "nowhere")
	if err != nil || strings.Join(strings.Fields(out), "") != `{"Regions":[]}` {
		t.Errorf("empty list: %v %q %s", err, out, stderr)
	}

	out, stderr, err = runAWS(t, cli, ts.URL, bundle, testAK, testSecret, "ec2", "describe-regions",
		"--filters", "Name=region-name,Values=*-west")
	if err != nil || !strings.Contains(out, "ironbark-west") || strings.Contains(out, `"ironbark"`) {
		t.Errorf("filter: %v %q %s", err, out, stderr)
	}

	for _, tt := range []struct{ ak, secret, code string }{
		{testAK, "not-the-secret", CodeSignatureDoesNotMatch},
		{"AKIAUNKNOWN000000000", testSecret, CodeAuthFailure},
	} {
		_, stderr, err := runAWS(t, cli, ts.URL, bundle, tt.ak, tt.secret, "ec2", "describe-regions")
		var ee *exec.ExitError
		if !errors.As(err, &ee) || !strings.Contains(stderr, "("+tt.code+")") ||
			!strings.Contains(stderr, "DescribeRegions operation") {
			t.Errorf("want %s: err %v, stderr %q", tt.code, err, stderr)
		}
	}
}

// TestAWSCLIv1 drives the server with the AWS CLI v1 of the machine's
// Python (the first `aws` on PATH here).
func TestAWSCLIv1(t *testing.T) {
	lab.Require(t)
	home, _ := os.UserHomeDir()
	// The first aws on PATH here; else the pyenv Python's own, which runs
	// without pyenv's shims on PATH.
	candidates := []string{"aws"}
	direct, _ := filepath.Glob(filepath.Join(home, ".pyenv/versions/*/bin/aws"))
	candidates = append(candidates, direct...)
	cli := findAWSCLI(t, "aws-cli/1.", candidates...)
	if cli == "" {
		lab.Missing(t, "AWS CLI v1 (pip awscli in the machine's Python) not found")
	}
	testAWSCLI(t, cli)
}

// TestAWSCLIv2 drives the server with Debian's AWS CLI v2 (package
// awscli, /usr/bin/aws).
func TestAWSCLIv2(t *testing.T) {
	lab.Require(t)
	cli := findAWSCLI(t, "aws-cli/2.", "/usr/bin/aws", "aws")
	if cli == "" {
		lab.Missing(t, "AWS CLI v2 not found: apt-get install -y --no-install-recommends awscli")
	}
	testAWSCLI(t, cli)
}

// TestBoto2 drives the server with boto 2 (Debian python3-boto), the
// client that signs Signature V2 with the Host header's port left out,
// and Signature V4 with an IP endpoint's odd scope.
func TestBoto2(t *testing.T) {
	lab.Require(t, "/usr/bin/python3")
	if err := exec.Command("/usr/bin/python3", "-c", "import boto").Run(); err != nil {
		lab.Missing(t, "boto 2: apt-get install -y --no-install-recommends python3-boto")
	}
	ts, f, bundle := liveTLSServer(t)
	u, _ := url.Parse(ts.URL)
	// boto 2 checks certificates against the file its config names, and
	// host names against DNS names only: it reaches the server as
	// localhost.
	botoConfig := filepath.Join(t.TempDir(), "boto.cfg")
	if err := os.WriteFile(botoConfig, []byte("[Boto]\nhttps_validate_certificates = True\nca_certificates_file = "+bundle+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ mode, path, secret, want string }{
		{"v2", "/services/compute/", testSecret, "ironbark ironbark-west"},
		{"v4", "/services/compute/", testSecret, "ironbark ironbark-west"},
		{"v2", "/", "wrong", "ERROR 403 SignatureDoesNotMatch"},
		{"v4", "/services/Eucalyptus", "wrong", "ERROR 403 SignatureDoesNotMatch"},
	} {
		cmd := exec.Command("/usr/bin/python3", "testdata/boto2_regions.py", "localhost", u.Port(), tc.path, testAK, tc.secret, tc.mode)
		cmd.Env = []string{"HOME=" + t.TempDir(), "BOTO_CONFIG=" + botoConfig, "PATH=/usr/bin:/bin"}
		out, err := cmd.CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != tc.want {
			t.Errorf("boto2 %s %s: %v\n%s\nwant %q", tc.mode, tc.path, err, out, tc.want)
		}
	}
	if logs := f.logs.String(); !strings.Contains(logs, "auth=sigv2") || !strings.Contains(logs, "auth=sigv4 ") {
		t.Errorf("boto2 did not use both signatures:\n%s", logs)
	}
}
