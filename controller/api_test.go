package controller

import (
	"context"
	"crypto/sha1"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	sdk "github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"ironbark/internal/nodeapi"
	"ironbark/internal/store"
	"ironbark/internal/store/storetest"
)

func TestRegionsZonesTypes(t *testing.T) {
	storetest.Each(t, Migrations(), func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		e := newTestEnv(t, db)
		c := e.client(e.alice)

		regions := must[*sdk.DescribeRegionsOutput](t)(c.DescribeRegions(ctx, &sdk.DescribeRegionsInput{}))
		if len(regions.Regions) != 1 || aws.ToString(regions.Regions[0].RegionName) != "ironbark" {
			t.Fatalf("regions: %+v", regions.Regions)
		}

		zones := must[*sdk.DescribeAvailabilityZonesOutput](t)(c.DescribeAvailabilityZones(ctx, &sdk.DescribeAvailabilityZonesInput{}))
		if len(zones.AvailabilityZones) != 2 || aws.ToString(zones.AvailabilityZones[0].ZoneName) != "zone-a" {
			t.Fatalf("zones: %+v", zones.AvailabilityZones)
		}
		verbose := must[*sdk.DescribeAvailabilityZonesOutput](t)(c.DescribeAvailabilityZones(ctx,
			&sdk.DescribeAvailabilityZonesInput{ZoneNames: []string{"verbose"}}))
		// Eucalyptus' item form: after each zone, "|- vm types" and one
		// item per type, read by the SDK as more zones.
		var lines []string
		for _, z := range verbose.AvailabilityZones {
			lines = append(lines, aws.ToString(z.ZoneName)+" "+string(z.State))
		}
		// zone-a: two nodes of 8 cores / 4 GiB: m1.small (1/256/5) fits 8 per node (cores).
		if !slices.Contains(lines, "|- m1.small 0016 / 0016   1    256     5") {
			t.Fatalf("verbose zone-a:\n%s", strings.Join(lines, "\n"))
		}

		var names []string
		p := sdk.NewDescribeInstanceTypesPaginator(c, &sdk.DescribeInstanceTypesInput{MaxResults: aws.Int32(5)})
		for p.HasMorePages() {
			page := must[*sdk.DescribeInstanceTypesOutput](t)(p.NextPage(ctx))
			if len(page.InstanceTypes) > 5 {
				t.Fatalf("page of %d", len(page.InstanceTypes))
			}
			for _, it := range page.InstanceTypes {
				names = append(names, string(it.InstanceType))
			}
		}
		if len(names) != len(DefaultVMTypes()) || !sort.StringsAreSorted(names) {
			t.Fatalf("instance types: %v", names)
		}
		one := must[*sdk.DescribeInstanceTypesOutput](t)(c.DescribeInstanceTypes(ctx, &sdk.DescribeInstanceTypesInput{
			InstanceTypes: []types.InstanceType{"c1.medium"}}))
		it := one.InstanceTypes[0]
		if aws.ToInt32(it.VCpuInfo.DefaultVCpus) != 2 || aws.ToInt64(it.MemoryInfo.SizeInMiB) != 512 ||
			aws.ToInt64(it.InstanceStorageInfo.TotalSizeInGB) != 10 {
			t.Fatalf("c1.medium: %+v %+v", it.VCpuInfo, it.MemoryInfo)
		}
		_, err := c.DescribeInstanceTypes(ctx, &sdk.DescribeInstanceTypesInput{InstanceTypes: []types.InstanceType{"x9.huge"}})
		wantCode(t, err, "InvalidInstanceType")
	})
}

func TestKeyPairs(t *testing.T) {
	storetest.Each(t, Migrations(), func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		e := newTestEnv(t, db)
		c := e.client(e.alice)

		rsaKey := must[*sdk.CreateKeyPairOutput](t)(c.CreateKeyPair(ctx, &sdk.CreateKeyPairInput{KeyName: aws.String("alice-rsa")}))
		blk, _ := pem.Decode([]byte(aws.ToString(rsaKey.KeyMaterial)))
		if blk == nil || blk.Type != "RSA PRIVATE KEY" {
			t.Fatalf("rsa material: %q", aws.ToString(rsaKey.KeyMaterial))
		}
		priv, err := x509.ParsePKCS1PrivateKey(blk.Bytes)
		if err != nil || priv.N.BitLen() != 2048 {
			t.Fatalf("rsa key: %v", err)
		}
		p8, _ := x509.MarshalPKCS8PrivateKey(priv)
		sum := sha1.Sum(p8)
		if aws.ToString(rsaKey.KeyFingerprint) != colonHex(sum[:]) {
			t.Fatalf("rsa fingerprint %s, want SHA-1 of PKCS#8 %s", aws.ToString(rsaKey.KeyFingerprint), colonHex(sum[:]))
		}

		edKey := must[*sdk.CreateKeyPairOutput](t)(c.CreateKeyPair(ctx, &sdk.CreateKeyPairInput{KeyName: aws.String("alice-ed"), KeyType: types.KeyTypeEd25519}))
		if !strings.HasPrefix(aws.ToString(edKey.KeyMaterial), "-----BEGIN OPENSSH PRIVATE KEY-----") {
			t.Fatalf("ed25519 material: %q", aws.ToString(edKey.KeyMaterial))
		}
		if fp := aws.ToString(edKey.KeyFingerprint); len(fp) != 43 || strings.Contains(fp, ":") {
			t.Fatalf("ed25519 fingerprint %q", fp)
		}

		_, err = c.CreateKeyPair(ctx, &sdk.CreateKeyPairInput{KeyName: aws.String("alice-rsa")})
		wantCode(t, err, "InvalidKeyPair.Duplicate")

		// Import bob's own ssh key (from the ed25519 pair we just made).
		var pub string
		kps := must[*sdk.DescribeKeyPairsOutput](t)(c.DescribeKeyPairs(ctx, &sdk.DescribeKeyPairsInput{
			KeyNames: []string{"alice-ed"}, IncludePublicKey: aws.Bool(true)}))
		pub = aws.ToString(kps.KeyPairs[0].PublicKey)
		if !strings.HasPrefix(pub, "ssh-ed25519 ") {
			t.Fatalf("public key %q", pub)
		}
		imp := must[*sdk.ImportKeyPairOutput](t)(e.client(e.bob).ImportKeyPair(ctx, &sdk.ImportKeyPairInput{
			KeyName: aws.String("bob-ed"), PublicKeyMaterial: []byte(pub)}))
		if aws.ToString(imp.KeyFingerprint) != aws.ToString(edKey.KeyFingerprint) {
			t.Fatalf("imported ed25519 fingerprint %s, created %s", aws.ToString(imp.KeyFingerprint), aws.ToString(edKey.KeyFingerprint))
		}
		rsaPub := authorizedKey("ssh-rsa", sshRSAPublic(&priv.PublicKey), "x")
		impRSA := must[*sdk.ImportKeyPairOutput](t)(e.client(e.bob).ImportKeyPair(ctx, &sdk.ImportKeyPairInput{
			KeyName: aws.String("bob-rsa"), PublicKeyMaterial: []byte(rsaPub)}))
		if fp := aws.ToString(impRSA.KeyFingerprint); len(fp) != 47 {
			t.Fatalf("imported rsa fingerprint %q (want MD5, colon hex)", fp)
		}
		_, err = c.ImportKeyPair(ctx, &sdk.ImportKeyPairInput{KeyName: aws.String("junk"), PublicKeyMaterial: []byte("ssh-rsa AAAA")})
		wantCode(t, err, "InvalidKey.Format")

		// Each account sees only its own key pairs.
		all := must[*sdk.DescribeKeyPairsOutput](t)(c.DescribeKeyPairs(ctx, &sdk.DescribeKeyPairsInput{}))
		if len(all.KeyPairs) != 2 {
			t.Fatalf("alice sees %d key pairs", len(all.KeyPairs))
		}
		_, err = c.DescribeKeyPairs(ctx, &sdk.DescribeKeyPairsInput{KeyNames: []string{"bob-ed"}})
		wantCode(t, err, "InvalidKeyPair.NotFound")
		filtered := must[*sdk.DescribeKeyPairsOutput](t)(c.DescribeKeyPairs(ctx, &sdk.DescribeKeyPairsInput{
			Filters: []types.Filter{{Name: aws.String("key-type"), Values: []string{"ed25519"}}}}))
		if len(filtered.KeyPairs) != 1 || aws.ToString(filtered.KeyPairs[0].KeyName) != "alice-ed" {
			t.Fatalf("key-type filter: %+v", filtered.KeyPairs)
		}
		must[*sdk.DeleteKeyPairOutput](t)(c.DeleteKeyPair(ctx, &sdk.DeleteKeyPairInput{KeyName: aws.String("alice-ed")}))
		must[*sdk.DeleteKeyPairOutput](t)(c.DeleteKeyPair(ctx, &sdk.DeleteKeyPairInput{KeyName: aws.String("alice-ed")}))
		all = must[*sdk.DescribeKeyPairsOutput](t)(c.DescribeKeyPairs(ctx, &sdk.DescribeKeyPairsInput{}))
		if len(all.KeyPairs) != 1 {
			t.Fatalf("after delete alice sees %d key pairs", len(all.KeyPairs))
		}
	})
}

// run launches n m1.small instances of the test image for a client.
func (e *testEnv) run(c *sdk.Client, n int32, token string) *sdk.RunInstancesOutput {
	e.t.Helper()
	in := &sdk.RunInstancesInput{ImageId: aws.String(e.image), MinCount: aws.Int32(n), MaxCount: aws.Int32(n),
		InstanceType: "m1.small"}
	if token != "" {
		in.ClientToken = aws.String(token)
	}
	out, err := c.RunInstances(context.Background(), in)
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

func instanceIDs(rs []types.Reservation) []string {
	var ids []string
	for _, r := range rs {
		for _, in := range r.Instances {
			ids = append(ids, aws.ToString(in.InstanceId))
		}
	}
	return ids
}

func TestInstancesLifecycle(t *testing.T) {
	storetest.Each(t, Migrations(), func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		e := newTestEnv(t, db)
		c := e.client(e.alice)
		must[*sdk.CreateKeyPairOutput](t)(c.CreateKeyPair(ctx, &sdk.CreateKeyPairInput{KeyName: aws.String("k")}))

		out := must[*sdk.RunInstancesOutput](t)(c.RunInstances(ctx, &sdk.RunInstancesInput{
			ImageId: aws.String(e.image), MinCount: aws.Int32(3), MaxCount: aws.Int32(3), InstanceType: "c1.medium",
			KeyName: aws.String("k"), UserData: aws.String(base64.StdEncoding.EncodeToString([]byte("#!/bin/sh\necho hi\n"))),
			TagSpecifications: []types.TagSpecification{{ResourceType: types.ResourceTypeInstance,
				Tags: []types.Tag{{Key: aws.String("role"), Value: aws.String("web")}}}},
		}))
		if len(out.Instances) != 3 || aws.ToString(out.OwnerId) != e.alice.ID || len(out.Groups) != 1 ||
			aws.ToString(out.Groups[0].GroupName) != "default" {
			t.Fatalf("run: %+v", out)
		}
		in0 := out.Instances[0]
		if in0.State.Name != types.InstanceStateNamePending || aws.ToString(in0.KeyName) != "k" ||
			aws.ToString(in0.Placement.AvailabilityZone) != "zone-a" || len(in0.Tags) != 1 {
			t.Fatalf("instance: %+v", in0)
		}
		ids := []string{aws.ToString(out.Instances[0].InstanceId), aws.ToString(out.Instances[1].InstanceId), aws.ToString(out.Instances[2].InstanceId)}

		// The node sees them, with MAC, key and user data.
		var node string
		row := db.QueryRow(ctx, `SELECT node_id FROM instances WHERE id = ?`, ids[0])
		if err := row.Scan(&node); err != nil {
			t.Fatal(err)
		}
		specs := must[[]nodeapi.InstanceSpec](t)(e.cloud.DesiredOnNode(ctx, node))
		var spec *nodeapi.InstanceSpec
		for i := range specs {
			if specs[i].InstanceID == ids[0] {
				spec = &specs[i]
			}
		}
		if spec == nil || !strings.HasPrefix(spec.MAC, "d0:0d:") || spec.VMType.Cores != 2 || spec.Desired != "running" ||
			string(spec.UserData) != "#!/bin/sh\necho hi\n" || !strings.HasPrefix(spec.PublicKey, "ssh-rsa ") ||
			spec.Image.Digest == "" {
			t.Fatalf("spec: %+v", spec)
		}

		// The node reports them running, with a console.
		var sts []nodeapi.InstanceStatus
		for _, s := range specs {
			sts = append(sts, nodeapi.InstanceStatus{InstanceID: s.InstanceID, State: "running", ConsoleTail: []byte("login: ")})
		}
		if err := e.cloud.Observe(ctx, node, sts); err != nil {
			t.Fatal(err)
		}
		con := must[*sdk.GetConsoleOutputOutput](t)(c.GetConsoleOutput(ctx, &sdk.GetConsoleOutputInput{InstanceId: aws.String(ids[0])}))
		if raw, _ := base64.StdEncoding.DecodeString(aws.ToString(con.Output)); string(raw) != "login: " {
			t.Fatalf("console %q", aws.ToString(con.Output))
		}

		// Filters and pages.
		run := must[*sdk.DescribeInstancesOutput](t)(c.DescribeInstances(ctx, &sdk.DescribeInstancesInput{
			Filters: []types.Filter{{Name: aws.String("instance-state-name"), Values: []string{"running"}}}}))
		if got := instanceIDs(run.Reservations); len(got) != len(specs) {
			t.Fatalf("running: %v, node %s had %d", got, node, len(specs))
		}
		byTag := must[*sdk.DescribeInstancesOutput](t)(c.DescribeInstances(ctx, &sdk.DescribeInstancesInput{
			Filters: []types.Filter{{Name: aws.String("tag:role"), Values: []string{"w*"}}}}))
		if got := instanceIDs(byTag.Reservations); len(got) != 3 {
			t.Fatalf("tag filter: %v", got)
		}
		e.run(c, 4, "")
		var paged []string
		pg := sdk.NewDescribeInstancesPaginator(c, &sdk.DescribeInstancesInput{MaxResults: aws.Int32(5)})
		pages := 0
		for pg.HasMorePages() {
			page := must[*sdk.DescribeInstancesOutput](t)(pg.NextPage(ctx))
			paged = append(paged, instanceIDs(page.Reservations)...)
			pages++
		}
		if len(paged) != 7 || pages != 2 || len(wanted(paged)) != 7 {
			t.Fatalf("paged %d in %d pages: %v", len(paged), pages, paged)
		}
		_, err := c.DescribeInstances(ctx, &sdk.DescribeInstancesInput{NextToken: aws.String("bogus")})
		wantCode(t, err, "InvalidParameterValue")
		_, err = c.DescribeInstances(ctx, &sdk.DescribeInstancesInput{Filters: []types.Filter{{Name: aws.String("no-such"), Values: []string{"x"}}}})
		wantCode(t, err, "InvalidParameterValue")

		// Stop, start, reboot, terminate.
		stop := must[*sdk.StopInstancesOutput](t)(c.StopInstances(ctx, &sdk.StopInstancesInput{InstanceIds: ids[:1]}))
		if stop.StoppingInstances[0].CurrentState.Name != types.InstanceStateNameStopping {
			t.Fatalf("stop: %+v", stop.StoppingInstances[0])
		}
		if err := e.cloud.Observe(ctx, node, []nodeapi.InstanceStatus{{InstanceID: ids[0], State: "running"}}); err != nil {
			t.Fatal(err)
		}
		if st := e.state(t, ids[0]); st != "stopping" {
			t.Fatalf("a stale running report undid the stop: %s", st)
		}
		if err := e.cloud.Observe(ctx, node, []nodeapi.InstanceStatus{{InstanceID: ids[0], State: "stopped"}}); err != nil {
			t.Fatal(err)
		}
		start := must[*sdk.StartInstancesOutput](t)(c.StartInstances(ctx, &sdk.StartInstancesInput{InstanceIds: ids[:1]}))
		if start.StartingInstances[0].PreviousState.Name != types.InstanceStateNameStopped ||
			start.StartingInstances[0].CurrentState.Name != types.InstanceStateNamePending {
			t.Fatalf("start: %+v", start.StartingInstances[0])
		}
		must[*sdk.RebootInstancesOutput](t)(c.RebootInstances(ctx, &sdk.RebootInstancesInput{InstanceIds: ids[1:2]}))

		status := must[*sdk.DescribeInstanceStatusOutput](t)(c.DescribeInstanceStatus(ctx, &sdk.DescribeInstanceStatusInput{
			InstanceIds: ids}))
		for _, s := range status.InstanceStatuses {
			if s.InstanceState.Name != types.InstanceStateNameRunning {
				t.Fatalf("status lists a %s instance without IncludeAllInstances", s.InstanceState.Name)
			}
		}

		term := must[*sdk.TerminateInstancesOutput](t)(c.TerminateInstances(ctx, &sdk.TerminateInstancesInput{InstanceIds: ids}))
		for _, ch := range term.TerminatingInstances {
			if ch.CurrentState.Name != types.InstanceStateNameShuttingDown {
				t.Fatalf("terminate: %+v", ch)
			}
		}
		var final []nodeapi.InstanceStatus
		for _, id := range ids {
			final = append(final, nodeapi.InstanceStatus{InstanceID: id, State: "terminated"})
		}
		for _, n := range []string{"node-a1", "node-a2", "node-b1"} {
			if err := e.cloud.Observe(ctx, n, final); err != nil {
				t.Fatal(err)
			}
		}
		after := must[*sdk.DescribeInstancesOutput](t)(c.DescribeInstances(ctx, &sdk.DescribeInstancesInput{InstanceIds: ids}))
		for _, r := range after.Reservations {
			for _, in := range r.Instances {
				if in.State.Name != types.InstanceStateNameTerminated {
					t.Fatalf("after terminate: %s is %s", aws.ToString(in.InstanceId), in.State.Name)
				}
			}
		}
		for _, s := range must[[]nodeapi.InstanceSpec](t)(e.cloud.DesiredOnNode(ctx, node)) {
			if slices.ContainsFunc(ids, func(id string) bool { return id == s.InstanceID }) {
				t.Fatalf("terminated %s still desired on its node", s.InstanceID)
			}
		}
		// The usage counters agree with a count of the live instances.
		e.checkUsage(t)
		// Terminated instances stay visible for the TTL, then go.
		e.cloud.now = func() time.Time { return time.Now().Add(2 * time.Hour) }
		gone := must[*sdk.DescribeInstancesOutput](t)(c.DescribeInstances(ctx, &sdk.DescribeInstancesInput{}))
		if got := instanceIDs(gone.Reservations); len(got) != 4 {
			t.Fatalf("two hours later alice sees %d instances, want the 4 live ones", len(got))
		}
		counts := tableCounts(t, db)
		if n, err := e.cloud.Purge(ctx); err != nil || n != 3 {
			t.Fatalf("purge: %d, %v", n, err)
		}
		purged := tableCounts(t, db)
		if purged["instances"] != counts["instances"]-3 || purged["reservations"] != counts["reservations"]-1 ||
			purged["tags"] != counts["tags"]-3 {
			t.Fatalf("purge: %v -> %v", counts, purged)
		}
		e.checkUsage(t)
	})
}

func (e *testEnv) state(t *testing.T, id string) string {
	t.Helper()
	var s string
	if err := e.db.QueryRow(context.Background(), `SELECT state FROM instances WHERE id = ?`, id).Scan(&s); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestRunInstancesErrors(t *testing.T) {
	storetest.Each(t, Migrations(), func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		e := newTestEnv(t, db)
		c := e.client(e.alice)
		before := tableCounts(t, db)
		cases := []struct {
			in   *sdk.RunInstancesInput
			code string
		}{
			{&sdk.RunInstancesInput{ImageId: aws.String("emi-00000000"), MinCount: aws.Int32(1), MaxCount: aws.Int32(1)}, "InvalidAMIID.NotFound"},
			{&sdk.RunInstancesInput{ImageId: aws.String(e.image), MinCount: aws.Int32(2), MaxCount: aws.Int32(1)}, "InvalidParameterValue"},
			{&sdk.RunInstancesInput{ImageId: aws.String(e.image), MinCount: aws.Int32(1), MaxCount: aws.Int32(1), InstanceType: "q9.nope"}, "InvalidParameterValue"},
			{&sdk.RunInstancesInput{ImageId: aws.String(e.image), MinCount: aws.Int32(1), MaxCount: aws.Int32(1), KeyName: aws.String("nokey")}, "InvalidKeyPair.NotFound"},
			{&sdk.RunInstancesInput{ImageId: aws.String(e.image), MinCount: aws.Int32(1), MaxCount: aws.Int32(1), SecurityGroups: []string{"nogroup"}}, "InvalidGroup.NotFound"},
			{&sdk.RunInstancesInput{ImageId: aws.String(e.image), MinCount: aws.Int32(1), MaxCount: aws.Int32(1), UserData: aws.String("!!!")}, "InvalidParameterValue"},
			{&sdk.RunInstancesInput{ImageId: aws.String(e.image), MinCount: aws.Int32(1), MaxCount: aws.Int32(1),
				Placement: &types.Placement{AvailabilityZone: aws.String("zone-z")}}, "InvalidParameterValue"},
			// 100 m1.small do not fit in 10 cores.
			{&sdk.RunInstancesInput{ImageId: aws.String(e.image), MinCount: aws.Int32(100), MaxCount: aws.Int32(100)}, "InsufficientInstanceCapacity"},
		}
		for i, tc := range cases {
			_, err := c.RunInstances(ctx, tc.in)
			t.Run(fmt.Sprint(i), func(t *testing.T) { wantCode(t, err, tc.code) })
		}
		after := tableCounts(t, db)
		delete(before, "security_groups") // the default group is made on first use
		delete(after, "security_groups")
		delete(before, "security_group_rules")
		delete(after, "security_group_rules")
		if fmt.Sprint(before) != fmt.Sprint(after) {
			t.Fatalf("bad requests changed the store:\nbefore %v\nafter  %v", before, after)
		}
		// MinCount < MaxCount takes what fits.
		out := must[*sdk.RunInstancesOutput](t)(c.RunInstances(ctx, &sdk.RunInstancesInput{ImageId: aws.String(e.image),
			MinCount: aws.Int32(1), MaxCount: aws.Int32(100)}))
		if len(out.Instances) != 1 {
			t.Fatalf("min/max: %d instances", len(out.Instances))
		}
	})
}

// tableCounts counts the rows of every EC2-side table.
func tableCounts(t *testing.T, db *store.DB) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, tbl := range []string{"accounts", "access_keys", "images", "launch_permissions", "key_pairs", "security_groups",
		"security_group_rules", "reservations", "instances", "client_tokens", "addresses", "tags"} {
		var n int
		if err := db.QueryRow(context.Background(), `SELECT COUNT(*) FROM `+tbl).Scan(&n); err != nil {
			t.Fatal(err)
		}
		out[tbl] = n
	}
	return out
}

// checkUsage compares the ledger's usage counters with a recount.
func (e *testEnv) checkUsage(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	whole, _, err := e.cloud.readUsage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := whole.read
	// What placement sees (the cache) may still count ended instances,
	// never miss a live one.
	seen, err := e.cloud.Usage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for node, u := range got {
		if s := seen.Of(node); s.Instances < u.Instances {
			t.Fatalf("placement's usage of %s: %d instances, the counters %d", node, s.Instances, u.Instances)
		}
	}
	rows, err := e.db.Query(ctx, `SELECT node_id, COUNT(*) FROM instances WHERE state <> 'terminated' GROUP BY node_id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	want := map[string]int{}
	for rows.Next() {
		var node string
		var n int
		if err := rows.Scan(&node, &n); err != nil {
			t.Fatal(err)
		}
		want[node] = n
	}
	for node, n := range want {
		if got[node].Instances != n {
			t.Fatalf("usage of %s: %d instances, recount %d (all: %+v)", node, got[node].Instances, n, got)
		}
	}
	for node, u := range got {
		if u.Instances != want[node] {
			t.Fatalf("usage of %s: %d instances, recount %d", node, u.Instances, want[node])
		}
	}
}
