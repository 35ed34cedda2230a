package e2e

import (
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"ironbark/images/blobstore"
	"ironbark/internal/lab"
)

// TestFullDiskFailsCleanly puts the agent's image cache on a tmpfs that
// holds the kernel and the ramdisk but not the machine image: the launch
// ends terminated with a no-space reason, nothing of the image stays in
// the cache, and the agent launches a small image afterwards.
func TestFullDiskFailsCleanly(t *testing.T) {
	lab.Require(t, "mount", "umount")
	e := setup(t, nil)
	work := filepath.Dir(e.state)
	kernel, err := os.Stat(lab.GuestKernel(t).Vmlinuz)
	if err != nil {
		t.Fatal(err)
	}
	// Room for the kernel and the ramdisk (a few MiB) but not for a root
	// image bigger than the whole filesystem.
	fsSize := kernel.Size() + 8<<20
	cache := filepath.Join(e.state, "images")
	mountTmpfs(t, cache, fsSize, func() { destroyDomainsUnder(t, e.uri, work) })

	big := filepath.Join(work, "big.img")
	b := make([]byte, fsSize+16<<20)
	_, _ = rand.Read(b)
	if err := os.WriteFile(big, b, 0o644); err != nil {
		t.Fatal(err)
	}
	d, err := blobstore.ParseDigest(fileDigest(t, big))
	if err != nil {
		t.Fatal(err)
	}
	emi := e.machineImageFrom(t, e.initrd, big)

	e.startAgent(t, e.token(t))
	e.waitZone(t)
	id := e.run(t, emi)
	e.waitState(t, id, types.InstanceStateNameTerminated, stateWait)
	_, reason := e.instState(t, id)
	if !strings.Contains(reason, "no space") {
		t.Fatalf("reason %q does not say the disk is full", reason)
	}
	t.Logf("%s: %s", id, reason)
	e.assertGone(t, id)
	for _, p := range []string{filepath.Join(cache, "sha256", d.Hex()), filepath.Join(cache, "partial", d.Hex())} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Fatalf("%s stays in the cache: %v", p, err)
		}
	}

	// The agent goes on: a small image fits.
	id = e.run(t, e.machineImage(t, e.initrd))
	e.waitState(t, id, types.InstanceStateNameRunning, bootWait)
	e.waitMarker(t, id, marker, 1)
	e.terminate(t, id)
}

// mountTmpfs mounts a tmpfs of size bytes on dir (created) and unmounts it
// when the test ends, after before (which must release what holds files
// there, such as guests whose disks are backed by them).
func mountTmpfs(t testing.TB, dir string, size int64, before func()) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	opts := fmt.Sprintf("size=%d,mode=0755", size)
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", opts, "tmpfs", dir).CombinedOutput(); err != nil {
		lab.Missing(t, fmt.Sprintf("mount tmpfs: %v: %s", err, out))
	}
	t.Cleanup(func() {
		before()
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
			_ = exec.Command("umount", "-l", dir).Run()
		}
	})
}
