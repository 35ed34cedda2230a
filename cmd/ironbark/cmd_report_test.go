package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	sdk "github.com/aws/aws-sdk-go-v2/service/ec2"

	"ironbark/controller"
	"ironbark/controller/ec2/ec2test"
)

// TestReportUsage: an address a tenant's user holds shows in the usage
// report, in each format; bad flags are usage errors.
func TestReportUsage(t *testing.T) {
	dataDir, endpoint := startController(t)
	ctx := context.Background()
	mustRun(t, "account", "create", "tenant", "--data-dir", dataDir)
	mustRun(t, "address", "pool", "add", "198.51.100.0/30", "--data-dir", dataDir)
	dir := strings.TrimSpace(mustRun(t, "user", "create", "tenant", "dev", "--data-dir", dataDir))
	caPEM, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	key, secret := credsIn(t, dir)
	if _, err := ec2test.ClientCA(endpoint, key, secret, caPEM).AllocateAddress(ctx, &sdk.AllocateAddressInput{}); err != nil {
		t.Fatal(err)
	}

	var r controller.UsageReport
	if err := json.Unmarshal([]byte(mustRun(t, "report", "usage", "--by", "user", "--format", "json", "--data-dir", dataDir)), &r); err != nil {
		t.Fatal(err)
	}
	if len(r.Lines) != 1 || r.Lines[0].Account != "tenant" || r.Lines[0].User != "dev" || r.Lines[0].AddressHours < 0 {
		t.Fatalf("report: %+v", r)
	}
	recs, err := csv.NewReader(strings.NewReader(mustRun(t, "report", "usage", "--format", "csv", "--data-dir", dataDir))).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 || strings.Join(recs[0], ",") != "since,until,account,instance-hours,core-hours,silent-hours,address-hours,image-gib-hours" || recs[1][2] != "tenant" {
		t.Fatalf("csv: %q", recs)
	}
	table := mustRun(t, "report", "usage", "--by", "zone", "--since", "2026-01-01", "--data-dir", dataDir)
	if !strings.HasPrefix(table, "ZONE") {
		t.Fatalf("table:\n%s", table)
	}
	for _, bad := range [][]string{{"--by", "colour"}, {"--format", "xml"}, {"--since", "1h", "--until", "2h"}, {"--since", "yesterday"}} {
		if _, errs, code := ironbark(t, append([]string{"report", "usage", "--data-dir", dataDir}, bad...)...); code != 2 {
			t.Errorf("report usage %v: exit %d: %s", bad, code, errs)
		}
	}
}
