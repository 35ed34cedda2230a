package main

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	sdk "github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/smithy-go"

	"ironbark/controller/ec2/ec2test"
)

// credsIn reads the access key and secret of a credentials dir's AWS CLI
// credentials file, as a client would.
func credsIn(t *testing.T, dir string) (key, secret string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "credentials"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, " = "); ok {
			switch k {
			case "aws_access_key_id":
				key = v
			case "aws_secret_access_key":
				secret = v
			}
		}
	}
	if key == "" || secret == "" {
		t.Fatalf("no key in %s:\n%s", dir, b)
	}
	return key, secret
}

// TestKeyCommands rotates a tenant's key with the CLI against a running
// controller, and disables and enables the account: each change holds
// from the next call on.
func TestKeyCommands(t *testing.T) {
	dataDir, endpoint := startController(t)
	ctx := context.Background()
	dir := strings.TrimSpace(mustRun(t, "account", "create", "tenant", "--data-dir", dataDir))
	caPEM, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	client := func(dir string) *sdk.Client {
		key, secret := credsIn(t, dir)
		return ec2test.ClientCA(endpoint, key, secret, caPEM)
	}
	works := func(c *sdk.Client) {
		t.Helper()
		if _, err := c.DescribeRegions(ctx, &sdk.DescribeRegionsInput{}); err != nil {
			t.Fatal(err)
		}
	}
	refused := func(c *sdk.Client) {
		t.Helper()
		_, err := c.DescribeRegions(ctx, &sdk.DescribeRegionsInput{})
		var ae smithy.APIError
		if !errors.As(err, &ae) || ae.ErrorCode() != "AuthFailure" {
			t.Fatalf("want AuthFailure, got %v", err)
		}
	}
	oldKey, _ := credsIn(t, dir)
	old := client(dir)
	works(old)

	newDir := strings.TrimSpace(mustRun(t, "key", "create", "tenant", "--data-dir", dataDir))
	newKey, _ := credsIn(t, newDir)
	if newDir != filepath.Join(dataDir, "credentials", "tenant", "keys", newKey) {
		t.Fatalf("new key's dir %s", newDir)
	}
	for _, f := range []string{"eucarc", "config", "ca.pem"} {
		if _, err := os.Stat(filepath.Join(newDir, f)); err != nil {
			t.Fatal(err)
		}
	}
	fresh := client(newDir)
	works(fresh)
	works(old)
	if _, errs, code := ironbark(t, "key", "create", "tenant", "--data-dir", dataDir); code != 1 || !strings.Contains(errs, "at most 2") {
		t.Fatalf("third key: exit %d: %s", code, errs)
	}

	var keys []keyRow
	if err := json.Unmarshal([]byte(mustRun(t, "key", "list", "tenant", "--json", "--data-dir", dataDir)), &keys); err != nil {
		t.Fatal(err)
	}
	// The list is ordered by creation time, then id; the two keys may or may
	// not be made in the same second, so compare them as a set.
	if len(keys) != 2 || min(keys[0].AccessKey, keys[1].AccessKey)+max(keys[0].AccessKey, keys[1].AccessKey) != min(oldKey, newKey)+max(oldKey, newKey) {
		t.Fatalf("key list: %+v", keys)
	}
	for _, k := range keys {
		if k.Status != "Active" || k.LastUsed == nil {
			t.Fatalf("key list: %+v", k)
		}
	}

	mustRun(t, "key", "deactivate", "tenant", oldKey, "--data-dir", dataDir)
	refused(old)
	works(fresh)
	table := mustRun(t, "key", "list", "tenant", "--data-dir", dataDir)
	if !regexp.MustCompile(oldKey+` +- +Inactive`).MatchString(table) || !strings.Contains(table, "LAST USED") {
		t.Fatalf("key list:\n%s", table)
	}
	mustRun(t, "key", "delete", "tenant", oldKey, "--data-dir", dataDir)
	refused(old)
	if _, errs, code := ironbark(t, "key", "activate", "tenant", oldKey, "--data-dir", dataDir); code != 1 || !strings.Contains(errs, "not found") {
		t.Fatalf("activating a deleted key: exit %d: %s", code, errs)
	}

	mustRun(t, "account", "disable", "tenant", "--data-dir", dataDir)
	refused(fresh)
	if _, errs, _ := ironbark(t, "key", "list", "tenant", "--data-dir", dataDir); !strings.Contains(errs, "account tenant is disabled") {
		t.Fatalf("key list of a disabled account says: %s", errs)
	}
	mustRun(t, "account", "enable", "tenant", "--data-dir", dataDir)
	works(fresh)
	if _, errs, code := ironbark(t, "account", "disable", "admin", "--data-dir", dataDir); code != 1 || !strings.Contains(errs, "cannot be disabled") {
		t.Fatalf("disabling admin: exit %d: %s", code, errs)
	}
	if _, _, code := ironbark(t, "key", "list", "nobody", "--data-dir", dataDir); code != 1 {
		t.Fatalf("key list of an unknown account: exit %d", code)
	}
	if _, _, code := ironbark(t, "key", "deactivate", "tenant", "--data-dir", dataDir); code != 2 {
		t.Fatalf("key deactivate without KEYID: exit %d", code)
	}

	mustRun(t, "key", "delete", "tenant", newKey, "--data-dir", dataDir)
	if _, err := os.Stat(newDir); !os.IsNotExist(err) {
		t.Fatalf("deleted key's dir: %v", err)
	}
}

// TestUserCommands gives a tenant a user with its own credentials, a
// second key, and deletes it: its keys stop working at once.
func TestUserCommands(t *testing.T) {
	dataDir, endpoint := startController(t)
	ctx := context.Background()
	mustRun(t, "account", "create", "tenant", "--data-dir", dataDir)
	dir := strings.TrimSpace(mustRun(t, "user", "create", "tenant", "dev", "--data-dir", dataDir))
	if dir != filepath.Join(dataDir, "credentials", "tenant", "users", "dev") {
		t.Fatalf("user's dir %s", dir)
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	key, secret := credsIn(t, dir)
	dev := ec2test.ClientCA(endpoint, key, secret, caPEM)
	if _, err := dev.DescribeInstances(ctx, &sdk.DescribeInstancesInput{}); err != nil {
		t.Fatal(err)
	}
	if _, errs, code := ironbark(t, "user", "create", "tenant", "dev", "--data-dir", dataDir); code != 1 || !strings.Contains(errs, "already exists") {
		t.Fatalf("second dev: exit %d: %s", code, errs)
	}
	keyDir := strings.TrimSpace(mustRun(t, "key", "create", "tenant", "--user", "dev", "--data-dir", dataDir))
	key2, _ := credsIn(t, keyDir)
	var users []userRow
	if err := json.Unmarshal([]byte(mustRun(t, "user", "list", "tenant", "--json", "--data-dir", dataDir)), &users); err != nil {
		t.Fatal(err)
	}
	if len(users) != 1 || users[0].Name != "dev" || users[0].Keys != 2 || users[0].Role != "user" {
		t.Fatalf("user list: %+v", users)
	}
	var keys []keyRow
	if err := json.Unmarshal([]byte(mustRun(t, "key", "list", "tenant", "--json", "--data-dir", dataDir)), &keys); err != nil {
		t.Fatal(err)
	}
	byUser := map[string]int{}
	for _, k := range keys {
		byUser[k.User]++
	}
	if len(keys) != 3 || byUser[""] != 1 || byUser["dev"] != 2 {
		t.Fatalf("key list: %+v", keys)
	}
	if _, errs, code := ironbark(t, "user", "delete", "tenant", "dev", "--data-dir", dataDir); code != 1 || !strings.Contains(errs, "active access key") {
		t.Fatalf("delete with active keys: exit %d: %s", code, errs)
	}
	_, errs, code := ironbark(t, "user", "delete", "tenant", "dev", "--force", "--data-dir", dataDir)
	if code != 0 || !strings.Contains(errs, key) || !strings.Contains(errs, key2) {
		t.Fatalf("delete --force: exit %d: %s", code, errs)
	}
	_, err = dev.DescribeInstances(ctx, &sdk.DescribeInstancesInput{})
	var ae smithy.APIError
	if !errors.As(err, &ae) || ae.ErrorCode() != "AuthFailure" {
		t.Fatalf("a deleted user's key: %v", err)
	}
	for _, d := range []string{dir, keyDir} {
		if _, err := os.Stat(d); !os.IsNotExist(err) {
			t.Fatalf("%s stays: %v", d, err)
		}
	}
}
