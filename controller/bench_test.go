package controller

import (
	"context"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	sdk "github.com/aws/aws-sdk-go-v2/service/ec2"

	"ironbark/controller/ec2"
	"ironbark/controller/ec2/ec2test"
	"ironbark/internal/nodeapi"
	"ironbark/internal/store"
	"ironbark/internal/store/storetest"
)

// benchCloud is a Cloud on SQLite with room for 100,000 m1.small.
func benchCloud(b *testing.B) (*Cloud, *testEnv) {
	b.Helper()
	db := storetest.SQLite(b, Migrations())
	ctx := context.Background()
	cloud, err := New(Config{InstanceSubnet: "10.64.0.0/14"}, db, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	p := &fixedPlacer{ledger: cloud, types: DefaultVMTypes()}
	for i := range 100 {
		p.nodes = append(p.nodes, fixedNode{ID: fmt.Sprintf("n%03d", i), Zone: "z",
			Cap: nodeapi.Capacity{Cores: 1000, MemoryMiB: 1 << 20, DiskGiB: 1 << 20}})
	}
	cloud.SetPlacer(p)
	image, err := RegisterStoredImage(ctx, db, ImageRecord{Name: "bench", Digest: "sha256:" + hexOf(0xbe), Public: true})
	if err != nil {
		b.Fatal(err)
	}
	return cloud, &testEnv{db: db, image: image}
}

func (e *testEnv) seedAccount(b *testing.B, c *Cloud, name string, n int) ec2.Principal {
	b.Helper()
	a, err := CreateAccount(context.Background(), e.db, name, false)
	if err != nil {
		b.Fatal(err)
	}
	p := ec2.Principal{AccountID: a.ID, AccessKey: a.AccessKey}
	for n > 0 {
		k := min(n, 1000)
		_, err := c.ServeEC2(context.Background(), &ec2.Request{Action: "RunInstances", Principal: p,
			Params: map[string][]string{"ImageId": {e.image}, "MinCount": {strconv.Itoa(k)}, "MaxCount": {strconv.Itoa(k)}}})
		if err != nil {
			b.Fatal(err)
		}
		n -= k
	}
	return p
}

// keyOf is an account's access key and its secret in plaintext (the
// store keeps secrets sealed).
func (e *testEnv) keyOf(b *testing.B, account string) (key, secret string) {
	b.Helper()
	if err := e.db.QueryRow(context.Background(), `SELECT access_key, secret FROM access_keys WHERE account_id = ?`, account).Scan(&key, &secret); err != nil {
		b.Fatal(err)
	}
	if store.IsSealed(secret) {
		var err error
		if secret, err = e.db.Unseal(secret, key); err != nil {
			b.Fatal(err)
		}
	}
	return key, secret
}

// BenchmarkDescribeInstances answers DescribeInstances (action and XML,
// without HTTP) for an account of 1,000 instances, and for an account of
// 10 while other accounts hold 20,000: the second should cost what 10
// instances cost, whatever the others hold.
func BenchmarkDescribeInstances(b *testing.B) {
	cloud, e := benchCloud(b)
	big := e.seedAccount(b, cloud, "big", 1000)
	small := e.seedAccount(b, cloud, "small", 10)
	for i := range 20 {
		e.seedAccount(b, cloud, fmt.Sprintf("other%d", i), 1000)
	}
	for _, tc := range []struct {
		name string
		p    ec2.Principal
	}{{"own-1000", big}, {"own-10-others-21000", small}} {
		b.Run(tc.name, func(b *testing.B) {
			ns, _ := ec2.Namespace("2016-11-15")
			for b.Loop() {
				resp, err := cloud.ServeEC2(context.Background(), &ec2.Request{Action: "DescribeInstances", Principal: tc.p})
				if err != nil {
					b.Fatal(err)
				}
				if _, err := ec2.MarshalResponse("DescribeInstances", ns, "r", resp); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRunInstances launches one instance at a time into a cloud that
// already holds 10,000.
func BenchmarkRunInstances(b *testing.B) {
	cloud, e := benchCloud(b)
	p := e.seedAccount(b, cloud, "busy", 10000)
	params := map[string][]string{"ImageId": {e.image}, "MinCount": {"1"}, "MaxCount": {"1"}}
	for b.Loop() {
		if _, err := cloud.ServeEC2(context.Background(), &ec2.Request{Action: "RunInstances", Principal: p, Params: params}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDescribeInstanceByIDOverHTTP is one small call through the
// whole stack: SDK client, SigV4, the wire layer, the action, the store.
func BenchmarkDescribeInstanceByIDOverHTTP(b *testing.B) {
	cloud, e := benchCloud(b)
	p := e.seedAccount(b, cloud, "busy", 1000)
	var key, secret, id string
	key, secret = e.keyOf(b, p.AccountID)
	if err := e.db.QueryRow(context.Background(), `SELECT id FROM instances WHERE account_id = ? LIMIT 1`, p.AccountID).Scan(&id); err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(ec2.NewServer(ec2.Config{Handler: cloud, Credentials: cloud, Logger: slog.New(slog.DiscardHandler)}))
	defer srv.Close()
	c := ec2test.Client(srv.URL, key, secret)
	for b.Loop() {
		if _, err := c.DescribeInstances(context.Background(), &sdk.DescribeInstancesInput{InstanceIds: []string{id}}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkListInstancesPaged lists an account's 10,000 instances in pages
// of 1,000, as the SDK paginators do (NextToken through the wire layer).
func BenchmarkListInstancesPaged(b *testing.B) {
	cloud, e := benchCloud(b)
	p := e.seedAccount(b, cloud, "big", 10000)
	var key, secret string
	key, secret = e.keyOf(b, p.AccountID)
	srv := httptest.NewServer(ec2.NewServer(ec2.Config{Handler: cloud, Credentials: cloud, Logger: slog.New(slog.DiscardHandler)}))
	defer srv.Close()
	c := ec2test.Client(srv.URL, key, secret)
	for b.Loop() {
		n := 0
		pg := sdk.NewDescribeInstancesPaginator(c, &sdk.DescribeInstancesInput{MaxResults: aws.Int32(1000)})
		for pg.HasMorePages() {
			out, err := pg.NextPage(context.Background())
			if err != nil {
				b.Fatal(err)
			}
			for _, r := range out.Reservations {
				n += len(r.Instances)
			}
		}
		if n != 10000 {
			b.Fatalf("listed %d", n)
		}
	}
}

// BenchmarkDescribeInstances10k answers DescribeInstances for an account
// of 10,000 instances three ways in one run: the action alone, the action
// plus encoding/xml, and the whole wire layer (signature check, action and
// the Server's encoder). It is what decides whether a hand-written XML
// encoder earns its place: the answer's cost next to the action's.
func BenchmarkDescribeInstances10k(b *testing.B) {
	cloud, e := benchCloud(b)
	p := e.seedAccount(b, cloud, "big", 10000)
	ns, _ := ec2.Namespace("2016-11-15")
	b.Run("action", func(b *testing.B) {
		for b.Loop() {
			if _, err := cloud.ServeEC2(context.Background(), &ec2.Request{Action: "DescribeInstances", Principal: p}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("action+encoding-xml", func(b *testing.B) {
		for b.Loop() {
			resp, err := cloud.ServeEC2(context.Background(), &ec2.Request{Action: "DescribeInstances", Principal: p})
			if err != nil {
				b.Fatal(err)
			}
			if _, err := ec2.MarshalResponse("DescribeInstances", ns, "r", resp); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("wire-layer", func(b *testing.B) {
		var key, secret string
		key, secret = e.keyOf(b, p.AccountID)
		srv := ec2.NewServer(ec2.Config{Handler: cloud, Credentials: cloud, Logger: slog.New(slog.DiscardHandler)})
		for b.Loop() {
			q := ec2test.SignV2(url.Values{"Action": {"DescribeInstances"}, "Version": {"2016-11-15"}},
				"GET", "127.0.0.1", "/", key, secret, "HmacSHA256", time.Now(), false)
			r := httptest.NewRequest("GET", "http://127.0.0.1/?"+q.Encode(), nil)
			w := httptest.NewRecorder()
			srv.ServeHTTP(w, r)
			if w.Code != 200 {
				b.Fatalf("%d %s", w.Code, w.Body)
			}
		}
	})
}
