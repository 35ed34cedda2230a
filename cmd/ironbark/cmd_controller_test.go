package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"ironbark/controller"
	"ironbark/internal/datadir"
	"ironbark/internal/lab"
	"ironbark/internal/store"
	"ironbark/internal/store/storetest"
)

// startController runs `ironbark controller` in-process on loopback ports
// and waits until it has written its credentials.
func startController(t *testing.T) (dataDir, endpoint string) {
	t.Helper()
	return startControllerIn(t, t.TempDir(), "--listen", "127.0.0.1:0", "--node-listen", "127.0.0.1:0")
}

// startControllerIn runs `ironbark controller --data-dir dataDir args...`.
func startControllerIn(t *testing.T, dataDir string, args ...string) (string, string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, append([]string{"controller", "--data-dir", dataDir}, args...), io.Discard, io.Discard)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("controller: %v", err)
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		s, err := controller.LoadSettings(dataDir)
		if err == nil && s.Endpoint != "" {
			if _, err := os.Stat(filepath.Join(dataDir, "credentials", "admin", "eucarc")); err == nil {
				return dataDir, s.Endpoint
			}
		}
		select {
		case err := <-done:
			t.Fatalf("controller exited: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("controller did not start")
		}
	}
}

// clientEnv is the environment a user gets from the account's files.
func clientEnv(t *testing.T, credDir string) []string {
	env := []string{
		"HOME=" + t.TempDir(),
		"PATH=" + os.Getenv("PATH"),
		"AWS_CONFIG_FILE=" + filepath.Join(credDir, "config"),
		"AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(credDir, "credentials"),
		"AWS_EC2_METADATA_DISABLED=true",
		"AWS_PAGER=",
	}
	for _, k := range []string{"PYENV_ROOT", "PYENV_VERSION", "LANG"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return env
}

// TestEC2Clients drives `ironbark controller` with AWS CLI v1, AWS CLI v2
// and boto3, the way a user would after sourcing an account's eucarc.
func TestEC2Clients(t *testing.T) {
	lab.Require(t, "aws", "python3")
	dataDir, endpoint := startController(t)
	ctx := context.Background()

	// An image in the store, as `ironbark image import` registers it.
	db := dataDirStore(t, dataDir)
	emi, err := controller.RegisterStoredImage(ctx, db, controller.ImageRecord{Name: "debian-12-cloud",
		Description: "Debian 12 cloud image", Digest: "sha256:" + strings.Repeat("5e", 32), Size: 2 << 30, Public: true})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	// A tenant account made by the CLI, used by every client below.
	mustRun(t, "account", "create", "tenant", "--data-dir", dataDir)
	creds := filepath.Join(dataDir, "credentials", "tenant")
	env := clientEnv(t, creds)

	type client struct {
		name    string
		version string // what --version must say
		argv    func(args ...string) []string
	}
	clients := []client{
		{"aws-cli-v1", "aws-cli/1.", func(a ...string) []string { return append([]string{"aws", "--endpoint-url", endpoint}, a...) }},
		{"aws-cli-v2", "aws-cli/2.", func(a ...string) []string {
			return append([]string{"/usr/bin/aws", "--endpoint-url", endpoint}, a...)
		}},
	}
	for _, c := range clients {
		t.Run(c.name, func(t *testing.T) {
			if _, err := os.Stat(c.argv()[0]); c.argv()[0] != "aws" && err != nil {
				lab.Missing(t, c.argv()[0]+" (Debian awscli) not installed")
			}
			run := func(args ...string) map[string]any {
				t.Helper()
				argv := c.argv(append(args, "--output", "json")...)
				cmd := exec.Command(argv[0], argv[1:]...)
				cmd.Env = env
				out, err := cmd.Output()
				if err != nil {
					var stderr string
					if ee, ok := err.(*exec.ExitError); ok {
						stderr = string(ee.Stderr)
					}
					t.Fatalf("%s: %v\n%s%s", strings.Join(argv, " "), err, out, stderr)
				}
				var v map[string]any
				if err := json.Unmarshal(out, &v); err != nil {
					t.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, out)
				}
				return v
			}
			ver, err := exec.Command(c.argv()[0], "--version").CombinedOutput()
			if err != nil || !strings.Contains(string(ver), c.version) {
				lab.Missing(t, c.name+": "+strings.TrimSpace(string(ver)))
			}
			regions := run("ec2", "describe-regions")["Regions"].([]any)
			if len(regions) != 1 || regions[0].(map[string]any)["RegionName"] != "ironbark" {
				t.Fatalf("regions: %v", regions)
			}
			zones := run("ec2", "describe-availability-zones")
			if _, ok := zones["AvailabilityZones"]; !ok {
				t.Fatalf("zones: %v", zones)
			}
			key := run("ec2", "create-key-pair", "--key-name", c.name)
			if !strings.Contains(key["KeyMaterial"].(string), "BEGIN RSA PRIVATE KEY") || len(key["KeyFingerprint"].(string)) != 59 {
				t.Fatalf("create-key-pair: %v", key)
			}
			kps := run("ec2", "describe-key-pairs", "--key-names", c.name)["KeyPairs"].([]any)
			if len(kps) != 1 || kps[0].(map[string]any)["KeyFingerprint"] != key["KeyFingerprint"] {
				t.Fatalf("describe-key-pairs: %v", kps)
			}
			imgs := run("ec2", "describe-images")["Images"].([]any)
			if len(imgs) != 1 || imgs[0].(map[string]any)["ImageId"] != emi {
				t.Fatalf("describe-images: %v", imgs)
			}
			if rs := run("ec2", "describe-instances")["Reservations"].([]any); len(rs) != 0 {
				t.Fatalf("describe-instances: %v", rs)
			}
		})
	}

	t.Run("boto3", func(t *testing.T) {
		script := `
import boto3, json, sys
ec2 = boto3.client("ec2", endpoint_url=sys.argv[1])
out = {}
out["regions"] = [r["RegionName"] for r in ec2.describe_regions()["Regions"]]
out["zones"] = ec2.describe_availability_zones()["AvailabilityZones"]
k = ec2.create_key_pair(KeyName="boto3", KeyType="ed25519")
out["fingerprint"] = k["KeyFingerprint"]
out["keys"] = [p["KeyName"] for p in ec2.describe_key_pairs()["KeyPairs"]]
out["images"] = [i["ImageId"] for i in ec2.describe_images(Owners=["` + "self" + `"])["Images"]] + [i["ImageId"] for i in ec2.describe_images()["Images"]]
out["reservations"] = ec2.describe_instances()["Reservations"]
print(json.dumps(out, default=str))
`
		cmd := exec.Command("python3", "-c", script, endpoint)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			if strings.Contains(string(out), "No module named 'boto3'") {
				lab.Missing(t, "python3 boto3")
			}
			t.Fatalf("boto3: %v\n%s", err, out)
		}
		var v struct {
			Regions      []string
			Fingerprint  string
			Keys         []string
			Images       []string
			Reservations []any
		}
		if err := json.Unmarshal(out, &v); err != nil {
			t.Fatalf("boto3 output: %v\n%s", err, out)
		}
		if len(v.Regions) != 1 || v.Regions[0] != "ironbark" || len(v.Fingerprint) != 43 ||
			!slices.Contains(v.Keys, "boto3") || len(v.Images) != 1 || v.Images[0] != emi || len(v.Reservations) != 0 {
			t.Fatalf("boto3: %s", out)
		}
	})
}

// TestControllerRemembersDB starts the controller on PostgreSQL and checks
// that `account create` without --db finds the same store.
func TestControllerRemembersDB(t *testing.T) {
	admin := os.Getenv(storetest.EnvPG)
	if admin == "" {
		lab.Missing(t, storetest.EnvPG+" not set (make test starts PostgreSQL)")
	}
	ctx := context.Background()
	adb, err := store.Open(ctx, admin)
	if err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("ctl_%d", time.Now().UnixNano())
	if _, err := adb.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = adb.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
		adb.Close()
	})
	u, err := url.Parse(admin)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name
	dataDir := t.TempDir()
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- run(cctx, []string{"controller", "--data-dir", dataDir, "--db", u.String(), "--listen", "127.0.0.1:0", "--node-listen", "127.0.0.1:0"}, io.Discard, io.Discard)
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("controller: %v", err)
		}
	}()
	for deadline := time.Now().Add(30 * time.Second); ; {
		if s, _ := controller.LoadSettings(dataDir); s.Endpoint != "" {
			if s.DB != u.String() {
				t.Fatalf("remembered db %q", s.DB)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("controller did not start")
		}
		time.Sleep(50 * time.Millisecond)
	}
	mustRun(t, "account", "create", "carol", "--data-dir", dataDir)
	db, err := store.Open(ctx, u.String())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// The secret in PostgreSQL is sealed: the key is on this machine only.
	if _, err := controller.LookupAccount(ctx, db, "carol"); !errors.Is(err, store.ErrNoKeyFile) {
		t.Fatalf("carol's secret read without the key file: %v", err)
	}
	db.UseKeyFile(datadir.Dir(dataDir).SecretKey())
	a, err := controller.LookupAccount(ctx, db, "carol")
	if err != nil {
		t.Fatalf("carol is not in the PostgreSQL store: %v", err)
	}
	eucarc, err := os.ReadFile(filepath.Join(dataDir, "credentials", "carol", "eucarc"))
	if err != nil || !strings.Contains(string(eucarc), "export EC2_ACCESS_KEY="+a.AccessKey) {
		t.Fatalf("carol's eucarc: %v\n%s", err, eucarc)
	}
	if _, _, code := ironbark(t, "account", "create", "carol", "--data-dir", dataDir); code != 1 {
		t.Fatalf("a second carol: exit %d, want 1", code)
	}
}
