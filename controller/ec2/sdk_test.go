package ec2

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go"

	"ironbark/controller/ec2/ec2test"
)

// liveServer runs a Server on a loopback listener with the real clock.
func liveServer(t testing.TB) (*httptest.Server, *fixture) {
	t.Helper()
	f := newFixture(t, nil)
	ts := httptest.NewServer(f.srv)
	t.Cleanup(ts.Close)
	return ts, f
}

func sdkClient(url, ak, secret string) *ec2.Client { return ec2test.Client(url, ak, secret) }

func TestSDKClient(t *testing.T) {
	ts, _ := liveServer(t)
	ctx := context.Background()

	for _, path := range []string{"", "/services/compute", "/services/Eucalyptus/"} {
		out, err := sdkClient(ts.URL+path, testAK, testSecret).DescribeRegions(ctx, &ec2.DescribeRegionsInput{})
		if err != nil {
			t.Fatalf("DescribeRegions at %q: %v", path, err)
		}
		if len(out.Regions) != 2 || aws.ToString(out.Regions[0].RegionName) != "ironbark" ||
			aws.ToString(out.Regions[1].Endpoint) != "ec2.ironbark-west.example" {
			t.Errorf("regions at %q: %+v", path, out.Regions)
		}
		if id, ok := awsmiddleware.GetRequestIDMetadata(out.ResultMetadata); !ok || !uuidRE.MatchString(id) {
			t.Errorf("request id %q %v", id, ok)
		}
	}

	out, err := sdkClient(ts.URL, testAK, testSecret).DescribeRegions(ctx, &ec2.DescribeRegionsInput{
		RegionNames: []string{"ironbark-west", "nowhere"},
		Filters:     []types.Filter{{Name: aws.String("endpoint"), Values: []string{"ec2.*.example"}}},
	})
	if err != nil || len(out.Regions) != 1 || aws.ToString(out.Regions[0].RegionName) != "ironbark-west" {
		t.Errorf("filtered: %+v %v", out, err)
	}

	// An empty list is an empty list, not an error.
	out, err = sdkClient(ts.URL, testAK, testSecret).DescribeRegions(ctx, &ec2.DescribeRegionsInput{RegionNames: []string{"nowhere"}})
	if err != nil || len(out.Regions) != 0 {
		t.Errorf("empty: %+v %v", out, err)
	}

	errTests := []struct {
		name, ak, secret string
		in               *ec2.DescribeRegionsInput
		code             string
	}{
		{"bad secret", testAK, "wrong", &ec2.DescribeRegionsInput{}, CodeSignatureDoesNotMatch},
		{"unknown key", "AKIAUNKNOWN000000000", testSecret, &ec2.DescribeRegionsInput{}, CodeAuthFailure},
		{"bad filter", testAK, testSecret, &ec2.DescribeRegionsInput{
			Filters: []types.Filter{{Name: aws.String("color"), Values: []string{"red"}}}}, CodeInvalidParameterValue},
	}
	for _, tt := range errTests {
		_, err := sdkClient(ts.URL, tt.ak, tt.secret).DescribeRegions(ctx, tt.in)
		var ae smithy.APIError
		if !errors.As(err, &ae) || ae.ErrorCode() != tt.code || ae.ErrorMessage() == "" {
			t.Errorf("%s: %v, want API error %s", tt.name, err, tt.code)
			continue
		}
		var re interface{ ServiceRequestID() string }
		if !errors.As(err, &re) || !uuidRE.MatchString(re.ServiceRequestID()) {
			t.Errorf("%s: no request id in %v", tt.name, err)
		}
	}
}

// TestSDKLargeResponse reads a 1,000-item answer with timestamps through
// the SDK's own deserialiser (DescribeThings is shaped like
// DescribeKeyPairs: a keySet of items).
func TestSDKLargeResponse(t *testing.T) {
	b, err := MarshalResponse("DescribeKeyPairs", "http://ec2.amazonaws.com/doc/2016-11-15/", "id-1", keyPairsResponse(1000))
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(staticXML(b))
	t.Cleanup(ts.Close)
	out, err := sdkClient(ts.URL, testAK, testSecret).DescribeKeyPairs(context.Background(), &ec2.DescribeKeyPairsInput{})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.KeyPairs) != 1000 {
		t.Fatalf("%d key pairs", len(out.KeyPairs))
	}
	kp := out.KeyPairs[999]
	if aws.ToString(kp.KeyName) != "key-999" || kp.CreateTime == nil || !kp.CreateTime.Equal(testClock.Add(999*1e6)) {
		t.Errorf("last key pair %+v (created %v)", kp, kp.CreateTime)
	}
}

// TestLiveV2AndPresigned sends Signature V2 (form POST and GET) and a
// presigned V4 GET over a real socket, where Host and the path are what
// net/http makes of the wire.
func TestLiveV2AndPresigned(t *testing.T) {
	ts, f := liveServer(t)
	u, err := url.Parse(ts.URL)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	hostOnly := u.Hostname() // boto2 signs the host without the port
	for _, tc := range []struct {
		name, method, host, path, alg string
	}{
		{"POST sha256 host:port", http.MethodPost, u.Host, "/services/compute/", "HmacSHA256"},
		{"POST sha256 host", http.MethodPost, hostOnly, "/services/compute/", "HmacSHA256"},
		{"GET sha1", http.MethodGet, u.Host, "/services/Eucalyptus", "HmacSHA1"},
	} {
		q := ec2test.SignV2(regionsQuery("2014-10-01"), tc.method, tc.host, tc.path, testAK, testSecret, tc.alg, now, false)
		var resp *http.Response
		if tc.method == http.MethodPost {
			resp, err = http.PostForm(ts.URL+tc.path, q)
		} else {
			resp, err = http.Get(ts.URL + tc.path + "?" + q.Encode())
		}
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(body), `xmlns="http://ec2.amazonaws.com/doc/2014-10-01/"`) {
			t.Errorf("%s: %d %s", tc.name, resp.StatusCode, body)
		}
	}

	r, _ := http.NewRequest(http.MethodGet, ts.URL+"/?"+regionsQuery("2016-11-15").Encode(), nil)
	p := presignV4(t, r, testAK, testSecret, now, 60)
	resp, err := http.DefaultClient.Do(p)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("presigned: %d %s", resp.StatusCode, body)
	}
	if logs := f.logs.String(); !strings.Contains(logs, "account="+testAcct) || !strings.Contains(logs, "action=DescribeRegions") ||
		!strings.Contains(logs, "auth=sigv2") || !strings.Contains(logs, "auth=sigv4-query") {
		t.Errorf("log lines: %s", logs)
	}
}
