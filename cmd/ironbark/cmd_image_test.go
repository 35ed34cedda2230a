package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"ironbark/internal/lab"
)

// TestImageBuildImportDescribe builds an EMI and its EKI from a rootfs
// tree with `ironbark image build`, registers both with `ironbark image
// import` while the controller runs, and finds them with the AWS CLI's
// describe-images.
func TestImageBuildImportDescribe(t *testing.T) {
	lab.Require(t, "aws", "qemu-img", "e2fsck")
	dataDir, endpoint := startController(t)
	work := t.TempDir()
	root := filepath.Join(work, "rootfs")
	for _, d := range []string{"boot", "etc", "sbin"} {
		os.MkdirAll(filepath.Join(root, d), 0o755)
	}
	kernel := make([]byte, 8192)
	copy(kernel[0x202:], "HdrS")
	os.WriteFile(filepath.Join(root, "boot/vmlinuz-6.1.0-test"), kernel, 0o644)
	os.WriteFile(filepath.Join(root, "etc/hostname"), []byte("emi\n"), 0o644)

	emiFile, ekiFile := filepath.Join(work, "debian.img"), filepath.Join(work, "vmlinuz")
	out := mustRun(t, "image", "build", "--from", root, "--out", emiFile, "--kernel-out", ekiFile)
	if !strings.Contains(out, "fs image") || !strings.Contains(out, "kernel (EKI)") {
		t.Errorf("image build printed:\n%s", out)
	}
	if b, err := exec.Command("e2fsck", "-fn", emiFile).CombinedOutput(); err != nil {
		t.Fatalf("e2fsck: %v\n%s", err, b)
	}
	eki := strings.TrimSpace(mustRun(t, "image", "import", ekiFile, "--kind", "kernel", "--name", "vmlinuz-6.1.0-test", "--data-dir", dataDir))
	if !strings.HasPrefix(eki, "eki-") {
		t.Fatalf("kernel import printed %q", eki)
	}
	emi := strings.TrimSpace(mustRun(t, "image", "import", emiFile, "--data-dir", dataDir, "--kernel", eki, "--public"))
	if !strings.HasPrefix(emi, "emi-") {
		t.Fatalf("image import printed %q", emi)
	}
	list := mustRun(t, "image", "list", "--data-dir", dataDir)
	if !strings.Contains(list, emi) || !strings.Contains(list, eki) || strings.Contains(list, "blob missing") {
		t.Errorf("image list:\n%s", list)
	}

	cmd := exec.Command("aws", "--endpoint-url", endpoint, "ec2", "describe-images", "--image-ids", emi, "--output", "json")
	cmd.Env = clientEnv(t, filepath.Join(dataDir, "credentials", "admin"))
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("describe-images: %v\n%s", err, b)
	}
	var resp struct {
		Images []struct {
			ImageId, Name, KernelId, OwnerId, ImageType, State string
			Public                                             bool
		}
	}
	if err := json.Unmarshal(b, &resp); err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	if len(resp.Images) != 1 || resp.Images[0].ImageId != emi || resp.Images[0].KernelId != eki ||
		resp.Images[0].Name != "debian" || !resp.Images[0].Public || resp.Images[0].ImageType != "machine" {
		t.Fatalf("describe-images: %s", b)
	}
	t.Logf("describe-images: %s", b)
}
