package controller

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	sdk "github.com/aws/aws-sdk-go-v2/service/ec2"

	"ironbark/controller/ec2/ec2test"
	"ironbark/internal/store"
	"ironbark/internal/store/storetest"
)

// post sends body, byte for byte, as account a, and returns the status
// and the answer.
func (e *testEnv) post(a Account, body string) (int, string) {
	e.t.Helper()
	return e.postTo("/services/compute", "ec2", a, body)
}

// postTo is post to another path, signed for another service.
func (e *testEnv) postTo(path, service string, a Account, body string) (int, string) {
	e.t.Helper()
	status, b, err := ec2test.Post(context.Background(), e.srv.URL+path, a.AccessKey, a.SecretKey, service, body)
	if err != nil {
		e.t.Fatal(err)
	}
	return status, string(b)
}

// mustPost is post that fails the test unless the answer is a 200.
func (e *testEnv) mustPost(a Account, body string) string {
	e.t.Helper()
	status, out := e.post(a, body)
	if status != 200 {
		e.t.Fatalf("%s\n-> %d %s", body, status, out)
	}
	return out
}

// tagsOf returns key=value of a resource's tags, sorted by key.
func (e *testEnv) tagsOf(id string) string {
	e.t.Helper()
	rows, err := e.db.Query(context.Background(), `SELECT key, value FROM tags WHERE resource_id = ? ORDER BY key`, id)
	if err != nil {
		e.t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			e.t.Fatal(err)
		}
		out = append(out, k+"="+v)
	}
	return strings.Join(out, ",")
}

// TestZeroBasedLists sends the 0-based numbered parameters some clients
// have sent for a decade: every member counts, in the order of its number.
func TestZeroBasedLists(t *testing.T) {
	storetest.Each(t, Migrations(), func(t *testing.T, db *store.DB) {
		e := newTestEnv(t, db)
		inst := aws.ToString(e.run(e.client(e.alice), 1, "").Instances[0].InstanceId)

		e.mustPost(e.alice, "Action=CreateTags&ResourceId.0="+inst+
			"&Tag.0.Key=Name&Tag.0.Value=web&Tag.1.Key=env&Tag.1.Value=prod&Tag.2.Key=team&Tag.2.Value=ops&Version=2016-11-15")
		if got := e.tagsOf(inst); got != "Name=web,env=prod,team=ops" {
			t.Fatalf("after CreateTags with Tag.0: %q", got)
		}
		// Only Tag.0: delete that one tag, not every tag of the resource.
		e.mustPost(e.alice, "Action=DeleteTags&ResourceId.0="+inst+"&Tag.0.Key=Name&Version=2016-11-15")
		if got := e.tagsOf(inst); got != "env=prod,team=ops" {
			t.Fatalf("after DeleteTags Tag.0.Key=Name: %q", got)
		}
		// Numbers are order keys: 7 before 10, with gaps.
		e.mustPost(e.alice, "Action=CreateTags&ResourceId.0="+inst+
			"&Tag.10.Key=b&Tag.10.Value=2&Tag.7.Key=b&Tag.7.Value=1&Version=2016-11-15")
		if got := e.tagsOf(inst); got != "b=2,env=prod,team=ops" {
			t.Fatalf("Tag.7 then Tag.10 of one key: %q", got)
		}
		// A malformed member is an error that deletes nothing.
		if status, out := e.post(e.alice, "Action=DeleteTags&ResourceId.0="+inst+"&Tag.x.Key=env&Version=2016-11-15"); status != 400 ||
			!strings.Contains(out, "<Code>UnknownParameter</Code>") {
			t.Fatalf("Tag.x.Key: %d %s", status, out)
		}
		if status, out := e.post(e.alice, "Action=DeleteTags&ResourceId.0="+inst+"&Tag.0.Kye=env&Version=2016-11-15"); status != 400 ||
			!strings.Contains(out, "<Code>UnknownParameter</Code>") {
			t.Fatalf("Tag.0.Kye: %d %s", status, out)
		}
		if got := e.tagsOf(inst); got != "b=2,env=prod,team=ops" {
			t.Fatalf("a refused DeleteTags changed tags: %q", got)
		}
		// Naming no tag at all deletes every tag, as EC2 does.
		e.mustPost(e.alice, "Action=DeleteTags&ResourceId.0="+inst+"&Version=2016-11-15")
		if got := e.tagsOf(inst); got != "" {
			t.Fatalf("DeleteTags without Tag: %q", got)
		}

		// LaunchPermission.Add.0 shares an image.
		img := e.registerPrivateImage(t, e.alice)
		e.mustPost(e.alice, "Action=ModifyImageAttribute&ImageId="+img+
			"&LaunchPermission.Add.0.UserId="+e.bob.ID+"&Version=2016-11-15")
		out := e.mustPost(e.bob, "Action=DescribeImages&ImageId.0="+img+"&Version=2016-11-15")
		if !strings.Contains(out, "<imageId>"+img+"</imageId>") {
			t.Fatalf("bob does not see the image shared with LaunchPermission.Add.0:\n%s", out)
		}
	})
}

// registerPrivateImage registers a private image owned by a (from the
// public image's blob: a tenant registers by digest only what it may read).
func (e *testEnv) registerPrivateImage(t *testing.T, a Account) string {
	t.Helper()
	out, err := e.client(a).RegisterImage(context.Background(), &sdk.RegisterImageInput{
		Name: aws.String(fmt.Sprintf("private-%s", a.Name)), ImageLocation: aws.String("sha256:" + hexOf(0x0f))})
	if err != nil {
		t.Fatal(err)
	}
	return aws.ToString(out.ImageId)
}

// TestUnknownParameterEverywhere sends every action a parameter it does
// not take: each answers UnknownParameter, as EC2 does, and changes
// nothing, instead of ignoring it.
func TestUnknownParameterEverywhere(t *testing.T) {
	storetest.Each(t, Migrations(), func(t *testing.T, db *store.DB) {
		e := newTestEnv(t, db)
		before := tableCounts(t, db)
		for name := range e.cloud.actions {
			for _, extra := range []string{"Bogus=1", "InstanceId.x=i-1", "Filter.1.Nme=x"} {
				status, out := e.post(e.alice, "Action="+name+"&"+extra+"&Version=2016-11-15")
				if status != 400 || !strings.Contains(out, "<Code>UnknownParameter</Code>") {
					t.Errorf("%s with %s: %d %s", name, extra, status, out)
				}
			}
		}
		if after := tableCounts(t, db); fmt.Sprint(after) != fmt.Sprint(before) {
			t.Errorf("calls with unknown parameters changed the store: %v -> %v", before, after)
		}
	})
}
