package main

import (
	"context"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	sdk "github.com/aws/aws-sdk-go-v2/service/ec2"

	"ironbark/controller"
	"ironbark/controller/ec2/ec2test"
	"ironbark/internal/datadir"
	"ironbark/internal/nodeapi"
	"ironbark/internal/pki"
)

// A node removed under running instances: `node remove` refuses and
// names them; --force terminates them (Server.InternalError), gives their
// capacity back and revokes the node.
func TestNodeRemovedUnderRunningInstances(t *testing.T) {
	ctx := context.Background()
	nodeAddr := freeAddr(t)
	data, endpoint := startControllerIn(t, t.TempDir(), "--listen", "127.0.0.1:0", "--node-listen", nodeAddr)
	ib := func(args ...string) string { return mustRun(t, append(args, "--data-dir", data)...) }
	ib("cluster", "add", "c1")
	lines := strings.Split(strings.TrimSpace(ib("node", "token", "--cluster", "c1")), "\n")
	tok := lines[len(lines)-1]
	_, fp, err := nodeapi.ParseToken(tok)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := pki.NewKey()
	csr, _ := pki.CSR(key, "compute-0-0")
	nc := nodeapi.NewClient("https://"+nodeAddr, pki.PinnedTLS(fp))
	defer nc.Close()
	enrolled, err := nc.Enroll(ctx, nodeapi.EnrollRequest{Token: tok, Hostname: "compute-0-0", CSR: string(csr),
		Capacity: nodeapi.Capacity{Cores: 2, MemoryMiB: 2048, DiskGiB: 50}})
	if err != nil {
		t.Fatal(err)
	}

	db := dataDirStore(t, data)
	admin, err := controller.EnsureAdmin(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	emi, err := controller.RegisterStoredImage(ctx, db, controller.ImageRecord{Name: "img", Digest: "sha256:" + strings.Repeat("1e", 32), Size: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	ca, err := pki.LoadOrCreateCA(datadir.Dir(data).PKI())
	if err != nil {
		t.Fatal(err)
	}
	c := ec2test.ClientCA(endpoint, admin.AccessKey, admin.SecretKey, ca.CertPEM())
	run, err := c.RunInstances(ctx, &sdk.RunInstancesInput{ImageId: aws.String(emi), InstanceType: "m1.small",
		MinCount: aws.Int32(2), MaxCount: aws.Int32(2)})
	if err != nil {
		t.Fatal(err)
	}
	ids := []string{aws.ToString(run.Instances[0].InstanceId), aws.ToString(run.Instances[1].InstanceId)}

	_, stderr, code := ironbark(t, "node", "remove", enrolled.NodeID, "--data-dir", data)
	if code != 1 || !strings.Contains(stderr, "still holds 2 instance(s)") || !strings.Contains(stderr, ids[0]) {
		t.Fatalf("node remove under instances: exit %d, %q", code, stderr)
	}
	t.Logf("node remove: %s", stderr)
	_, stderr, code = ironbark(t, "node", "remove", enrolled.NodeID, "--force", "--data-dir", data)
	if code != 0 || !strings.Contains(stderr, "terminated 2 instance(s)") {
		t.Fatalf("node remove --force: exit %d, %q", code, stderr)
	}
	t.Logf("node remove --force: %s", stderr)
	d, err := c.DescribeInstances(ctx, &sdk.DescribeInstancesInput{InstanceIds: ids})
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range d.Reservations[0].Instances {
		if in.State.Name != "terminated" || in.StateReason == nil || aws.ToString(in.StateReason.Code) != "Server.InternalError" {
			t.Errorf("%s after its node was removed: %s, reason %+v", aws.ToString(in.InstanceId), in.State.Name, in.StateReason)
		}
	}
	u, err := controller.LiveInstancesOnNode(ctx, db, enrolled.NodeID)
	if err != nil || len(u) != 0 {
		t.Fatalf("live instances on the removed node: %v %v", u, err)
	}
	if out := ib("node", "list"); strings.Contains(out, enrolled.NodeID) {
		t.Fatalf("removed node still listed:\n%s", out)
	}
}
