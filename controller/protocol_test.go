package controller

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"ironbark/controller/ec2"
	"ironbark/internal/store"
	"ironbark/internal/store/storetest"
)

// TestProtocolGaps sends what real clients were seen sending at the edges
// of the protocol: TagSpecification beyond CreateTags' limits, text that
// XML cannot carry, a query string over 1 MiB.
func TestProtocolGaps(t *testing.T) {
	storetest.Each(t, Migrations(), func(t *testing.T, db *store.DB) {
		e := newTestEnv(t, db)
		const v = "&Version=2016-11-15"
		run := "Action=RunInstances&ImageId=" + e.image + "&MinCount=1&MaxCount=1"
		spec := func(tags ...string) string {
			s := "&TagSpecification.1.ResourceType=instance"
			for i, kv := range tags {
				k, val, _ := strings.Cut(kv, "=")
				s += fmt.Sprintf("&TagSpecification.1.Tag.%d.Key=%s&TagSpecification.1.Tag.%d.Value=%s", i+1, k, i+1, val)
			}
			return s
		}
		many := make([]string, 51)
		for i := range many {
			many[i] = fmt.Sprintf("k%d=v", i)
		}
		e.mustPost(e.alice, "Action=DescribeSecurityGroups"+v) // the default group exists
		before := tableCounts(t, db)
		for _, tc := range []struct{ name, body, code string }{
			{"duplicate key", run + spec("Name=a", "Name=b"), "InvalidParameterValue"},
			{"51 tags", run + spec(many...), "TagLimitExceeded"},
			{"long key", run + spec(strings.Repeat("k", 129)+"=v"), "InvalidParameterValue"},
			{"long value", run + spec("k="+strings.Repeat("v", 257)), "InvalidParameterValue"},
			{"aws: key", run + spec("aws:x=v"), "InvalidParameterValue"},
			{"unknown resource type", run + "&TagSpecification.1.ResourceType=key-pair&TagSpecification.1.Tag.1.Key=a", "InvalidParameterValue"},
			{"invalid UTF-8", "Action=CreateKeyPair&KeyName=bad%FF%FEname", "InvalidParameterValue"},
			{"control character", "Action=CreateSecurityGroup&GroupName=g&GroupDescription=a%01b", "InvalidParameterValue"},
			{"U+FFFF", "Action=CreateSecurityGroup&GroupName=g&GroupDescription=a%EF%BF%BFb", "InvalidParameterValue"},
			{"invalid UTF-8 in a name", "Action=DescribeKeyPairs&Key%FFName.1=x", "InvalidParameterValue"},
		} {
			status, out := e.post(e.alice, tc.body+v)
			if status != 400 || !strings.Contains(out, "<Code>"+tc.code+"</Code>") {
				t.Errorf("%s: want 400 %s, got %d %s", tc.name, tc.code, status, out)
			}
		}
		if after := tableCounts(t, db); fmt.Sprint(after) != fmt.Sprint(before) {
			t.Errorf("refused calls changed the store: %v -> %v", before, after)
		}
		// Within the limits: 50 tags, and text with tabs, newlines and
		// non-ASCII letters, stored and answered as sent.
		out := e.mustPost(e.alice, run+spec(many[:50]...)+v)
		if strings.Count(out, "<key>k") != 50 {
			t.Errorf("50 tags at launch:\n%s", out)
		}
		e.mustPost(e.alice, "Action=CreateSecurityGroup&GroupName=g%C3%A9&GroupDescription=line%0Anext%09tab"+v)
		out = e.mustPost(e.alice, "Action=DescribeSecurityGroups&GroupName.1=g%C3%A9"+v)
		if !strings.Contains(out, "<groupDescription>line&#xA;next&#x9;tab</groupDescription>") {
			t.Errorf("description not kept as sent:\n%s", out)
		}

		// A query string over 1 MiB, through an http.Server set up as
		// `ironbark controller` sets it up: EC2's XML, not a plain 431.
		srv := httptest.NewUnstartedServer(ec2.NewServer(ec2.Config{Handler: e.cloud, Credentials: e.cloud, Logger: slog.New(slog.DiscardHandler)}))
		srv.Config.MaxHeaderBytes = ec2.MaxHeaderBytes
		srv.Start()
		defer srv.Close()
		resp, err := http.Get(srv.URL + "/?Action=DescribeRegions&Version=2016-11-15&Pad=" + strings.Repeat("x", 1<<20+1))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != 413 || resp.Header.Get("Content-Type") != "text/xml;charset=UTF-8" {
			t.Errorf("a 1 MiB query: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
	})
}

// TestRegionName: an operator-chosen region name (say us-east-1, for
// libraries that expect one) is what regions and zones answer and what
// their filters find.
func TestRegionName(t *testing.T) {
	db := storetest.SQLite(t, Migrations())
	e := newTestEnv(t, db)
	cloud, err := New(Config{Region: "us-east-1", Endpoint: "http://test/"}, db, e.placer, nil)
	if err != nil {
		t.Fatal(err)
	}
	alice := ec2.Principal{AccountID: e.alice.ID, AccessKey: e.alice.AccessKey}
	ctx := context.Background()
	resp, err := cloud.ServeEC2(ctx, &ec2.Request{Action: "DescribeAvailabilityZones", Version: "2016-11-15", Principal: alice,
		Params: map[string][]string{"Filter.1.Name": {"region-name"}, "Filter.1.Value.1": {"us-east-1"}}})
	if err != nil {
		t.Fatal(err)
	}
	zones := resp.(*DescribeAvailabilityZonesResponse).Zones
	if len(zones) != 2 || zones[0].RegionName != "us-east-1" || zones[0].ZoneID != "us-east-1-zone-a" {
		t.Fatalf("zones of us-east-1: %+v", zones)
	}
	resp, err = cloud.ServeEC2(ctx, &ec2.Request{Action: "DescribeRegions", Version: "2016-11-15", Principal: alice,
		Params: map[string][]string{"RegionName.1": {"us-east-1"}}})
	if err != nil || resp.(*DescribeRegionsResponse).Regions[0].RegionName != "us-east-1" {
		t.Fatalf("regions: %+v %v", resp, err)
	}
	for _, bad := range []string{"two words", "a\nb", strings.Repeat("r", 65)} {
		if _, err := New(Config{Region: bad}, db, nil, nil); err == nil {
			t.Errorf("region %q accepted", bad)
		}
	}
}
