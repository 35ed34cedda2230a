package appliance_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"ironbark/images/appliance"
	"ironbark/images/internal/qemuboot"
	"ironbark/internal/lab"
	"ironbark/roll"
)

// debianCache is shared by every run: the downloaded packages and the
// base trees survive, so only the first run on a machine downloads.
func debianCache() string { return filepath.Join(lab.CacheDir(), "appliance") }

const debianMarker = "IRONBARK-DEBIAN-APPLIANCE-UP"

// smallDebian is a real Debian 12 appliance with one package (the cloud
// kernel, which brings initramfs-tools), a test init and a post script.
func smallDebian() roll.Profile {
	o := func(node, pos string) roll.Origin {
		return roll.Origin{Roll: "test", Node: node, Pos: "nodes/" + node + ".xml:" + pos}
	}
	return roll.Profile{
		Appliance: "small", Arch: "x86_64", OS: "debian", Release: "12",
		Packages: []roll.Package{{Name: "linux-image-cloud-amd64", Origin: o("kernel", "3")}},
		Files: []roll.File{{Path: "/sbin/ironbark-test-init", Mode: 0o755, Origin: o("init", "4"), Content: []byte(`#!/bin/sh
echo "debian appliance: $(cat /etc/debian_version) $(cat /etc/ironbark-post)"
echo ` + debianMarker + `
echo o > /proc/sysrq-trigger
sleep 10
`)}},
		Scripts: []roll.Script{{Origin: o("init", "12"), Body: "set -e\necho \"post: $(dpkg-query -W -f '${Package}' linux-image-cloud-amd64)\" > /etc/ironbark-post\n"}},
		Attrs:   map[string]string{"kernel_args": "console=ttyS0,115200 ro panic=-1 init=/sbin/ironbark-test-init"},
	}
}

// TestDebianAppliance builds a real Debian 12 appliance with mmdebstrap
// from Debian's archive (cached between runs) and boots it on BIOS to
// its marker: the initramfs Debian made finds the root by UUID.
func TestDebianAppliance(t *testing.T) {
	lab.Require(t, "mmdebstrap", "unshare", "chroot", "grub-mkimage", "apt-get")
	c := appliance.Config{Profile: smallDebian(), CacheDir: debianCache(), Output: filepath.Join(t.TempDir(), "small.img")}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	res, err := appliance.Build(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("digest %s size %d base %s cached %v", res.Digest, res.Size, res.BaseKey, res.BaseCached)
	drive := []string{"-drive", "file=" + c.Output + ",format=raw,if=virtio,snapshot=on"}
	out := qemuboot.Boot(t, qemuboot.Options{Args: drive, Marker: debianMarker, Timeout: 240 * time.Second, Memory: "1024"})
	if !strings.Contains(out, "post: linux-image-cloud-amd64") {
		t.Errorf("the post script's result is not in the booted system:\n%s", out)
	}

	// The same inputs from the cached base give the same bytes.
	c2 := c
	c2.Output = filepath.Join(t.TempDir(), "small.img")
	res2, err := appliance.Build(ctx, c2)
	if err != nil {
		t.Fatal(err)
	}
	if !res2.BaseCached || res2.Digest != res.Digest {
		t.Errorf("second build: cached %v digest %s, want the first's %s", res2.BaseCached, res2.Digest, res.Digest)
	}
}

// TestUnknownPackage: apt's message and the roll and node that asked.
func TestUnknownPackage(t *testing.T) {
	lab.Require(t, "mmdebstrap", "apt-get")
	p := smallDebian()
	p.Packages = append(p.Packages, roll.Package{Name: "ironbark-no-such-package",
		Origin: roll.Origin{Roll: "site", Node: "tools", Pos: "nodes/tools.xml:5"}})
	out := filepath.Join(t.TempDir(), "small.img")
	_, err := appliance.Build(context.Background(), appliance.Config{Profile: p, CacheDir: debianCache(), Output: out})
	var pe *appliance.PackageError
	if !errors.As(err, &pe) {
		t.Fatalf("err = %v, want a PackageError", err)
	}
	for _, want := range []string{"Unable to locate package ironbark-no-such-package", "roll site", "node tools", "nodes/tools.xml:5"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	if m, _ := filepath.Glob(out + "*"); len(m) > 0 {
		t.Errorf("left behind: %v", m)
	}
}
