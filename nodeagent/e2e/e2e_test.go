package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"libvirt.org/go/libvirt"

	"ironbark/controller/cluster"
	"ironbark/controller/cluster/clustertest"
	"ironbark/images/blobstore"
	"ironbark/internal/lab"
	"ironbark/internal/nodeapi"
)

const marker = "IRONBARK-GUEST-OK"

// Guards against hangs, not timing assertions: TCG on two busy cores.
const (
	bootWait  = 3 * time.Minute
	stateWait = 2 * time.Minute
)

type env struct {
	uri, bridge, state, bin string
	ctl                     *clustertest.Controller
	blobs                   *blobstore.Store
	kernel, initrd, root    nodeapi.Artifact
}

func setup(t *testing.T, blobWrap func(http.Handler) http.Handler) *env {
	lab.Require(t, "cpio", "gzip", "ip", "qemu-img")
	uri := lab.Libvirt(t)
	k := lab.GuestKernel(t)
	bb := lab.Busybox(t)
	e := &env{uri: uri}
	work := t.TempDir()
	// qemu runs as libvirt-qemu: everything it opens must be reachable.
	for _, d := range []string{filepath.Dir(work), work} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	e.state = filepath.Join(work, "node")
	e.bin = buildAgent(t, work)
	e.bridge = makeBridge(t)

	var err error
	if e.blobs, err = blobstore.Open(filepath.Join(work, "blobs")); err != nil {
		t.Fatal(err)
	}
	var blobs http.Handler = e.blobs.Handler()
	if blobWrap != nil {
		blobs = blobWrap(blobs)
	}
	e.ctl = clustertest.Start(t, clustertest.NewLedger(), cluster.Config{Blobs: blobs, DesiredPoll: 200 * time.Millisecond})
	e.kernel = e.put(t, "eki", k.Vmlinuz, "raw")
	e.initrd = e.put(t, "eri", makeInitramfs(t, work, bb, marker), "raw")
	root := filepath.Join(work, "root.img")
	if err := os.WriteFile(root, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	e.root = e.put(t, "emi", root, "raw")
	return e
}

func (e *env) put(t *testing.T, kind, path, format string) nodeapi.Artifact {
	t.Helper()
	d, n, err := e.blobs.PutFile(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	return nodeapi.Artifact{ID: kind + "-" + d.Hex()[:8], Digest: string(d), Size: n,
		URL: blobstore.URLPath(strings.TrimSuffix(nodeapi.PathBlobs, "/"), d), Format: format}
}

func buildAgent(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "ironbark-node")
	cmd := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-o", bin, "ironbark/cmd/ironbark-node")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build ironbark-node: %v\n%s", err, out)
	}
	return bin
}

func makeBridge(t *testing.T) string {
	t.Helper()
	var b [2]byte
	_, _ = rand.Read(b[:])
	name := fmt.Sprintf("ibe%d%s", os.Getpid()%100000, hex.EncodeToString(b[:]))
	if out, err := exec.Command("ip", "link", "add", "name", name, "type", "bridge").CombinedOutput(); err != nil {
		lab.Missing(t, fmt.Sprintf("create bridge: %v: %s", err, out))
	}
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", name).Run() })
	if out, err := exec.Command("ip", "link", "set", "dev", name, "up").CombinedOutput(); err != nil {
		t.Fatalf("bridge up: %v: %s", err, out)
	}
	return name
}

// makeInitramfs builds a gzipped newc cpio whose /init prints the marker to
// the serial console and then idles.
func makeInitramfs(t *testing.T, dir, busybox, mark string) string {
	t.Helper()
	root := filepath.Join(dir, "initramfs-"+mark)
	for _, d := range []string{"bin", "dev", "proc"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bb, err := os.ReadFile(busybox)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "bin", "busybox"), bb, 0o755); err != nil {
		t.Fatal(err)
	}
	init := "#!/bin/busybox sh\n" +
		"/bin/busybox mount -t devtmpfs devtmpfs /dev\n" +
		"/bin/busybox echo " + mark + " > /dev/ttyS0\n" +
		"exec /bin/busybox sleep 1000000\n"
	if err := os.WriteFile(filepath.Join(root, "init"), []byte(init), 0o755); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "initrd-"+mark+".gz")
	cmd := exec.Command("sh", "-c", "find . | sort | cpio -o -H newc -R 0:0 --quiet | gzip -1 > "+out)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("initramfs: %v: %s", err, b)
	}
	return out
}

// agent is ironbark-node running as a process.
type agent struct {
	cmd *exec.Cmd
	log string
}

func (e *env) startAgent(t *testing.T, token string) *agent {
	t.Helper()
	logf, err := os.CreateTemp(filepath.Dir(e.state), "agent-*.log")
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"--controller", e.ctl.URL, "--libvirt", e.uri, "--state-dir", e.state,
		"--bridge", e.bridge, "--domain-type", "qemu", "--stop-timeout", "2s", "--log-level", "debug"}
	if token != "" {
		args = append(args, "--token", token)
	}
	cmd := exec.Command(e.bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	a := &agent{cmd: cmd, log: logf.Name()}
	logf.Close()
	t.Cleanup(func() {
		a.kill()
		if t.Failed() {
			b, _ := os.ReadFile(a.log)
			t.Logf("agent log %s:\n%s", a.log, b)
		}
	})
	return a
}

// kill ends the agent the hard way (SIGKILL: no cleanup of its own).
func (a *agent) kill() {
	if a.cmd.ProcessState == nil {
		_ = a.cmd.Process.Signal(syscall.SIGKILL)
		_ = a.cmd.Wait()
	}
}

func (e *env) waitNode(t *testing.T) string {
	t.Helper()
	deadline := time.Now().Add(stateWait)
	for time.Now().Before(deadline) {
		nodes, _ := e.ctl.Nodes(context.Background(), "zone-e2e")
		if len(nodes) == 1 {
			return nodes[0].ID
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("the agent did not enroll")
	return ""
}

func (e *env) spec(id, mac string, initrd nodeapi.Artifact) nodeapi.InstanceSpec {
	k, r := e.kernel, initrd
	return nodeapi.InstanceSpec{InstanceID: id, AccountID: "000000000001", MAC: mac, Image: e.root, Kernel: &k, Ramdisk: &r,
		VMType: nodeapi.VMType{Name: "m1.small", Cores: 1, MemoryMiB: 256, DiskGiB: 1}}
}

func (e *env) waitMarker(t *testing.T, id, mark string) {
	t.Helper()
	e.ctl.Ledger.Wait(t, id, bootWait, "console marker "+mark, func(_ nodeapi.InstanceStatus, con []byte) bool {
		return bytes.Contains(con, []byte(mark))
	})
}

// terminate ends the instance and checks that libvirt has no domain and
// the disks are gone.
func (e *env) terminate(t *testing.T, id string) {
	t.Helper()
	e.ctl.Ledger.SetDesired(id, nodeapi.StateTerminated)
	e.ctl.Ledger.WaitState(t, id, nodeapi.StateTerminated, stateWait)
	c, err := libvirt.NewConnect(e.uri)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if d, err := c.LookupDomainByName(id); err == nil {
		d.Free()
		t.Fatalf("domain %s still defined after terminate", id)
	}
	if _, err := os.Stat(filepath.Join(e.state, "instances", id)); !os.IsNotExist(err) {
		t.Fatalf("disks of %s remain: %v", id, err)
	}
}

// TestLaunchAndTerminate boots a real guest through the agent, reads its
// marker from the console tail the agent reports, and terminates it.
func TestLaunchAndTerminate(t *testing.T) {
	e := setup(t, nil)
	e.startAgent(t, e.ctl.Token(t, "zone-e2e"))
	node := e.waitNode(t)
	id := "i-e2e" + hex.EncodeToString(randBytes(3))
	e.ctl.Ledger.Launch(node, e.spec(id, "d0:0d:e2:e0:00:01", e.initrd))
	e.ctl.Ledger.WaitState(t, id, nodeapi.StateRunning, bootWait)
	e.waitMarker(t, id, marker)
	e.terminate(t, id)
}

// TestAgentKilledMidLaunch kills ironbark-node (SIGKILL) while it downloads
// a launch's ramdisk, restarts it, and expects the download to resume and
// the instance to run; then kills it again while the guest runs and
// expects the restarted agent to re-adopt the domain.
func TestAgentKilledMidLaunch(t *testing.T) {
	var slow string // path of the blob whose first download stalls halfway
	stalled := make(chan struct{}, 1)
	wrap := func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if slow == "" || r.URL.Path != slow || r.Header.Get("Range") != "" {
				h.ServeHTTP(w, r)
				return
			}
			rec := &capture{header: http.Header{}}
			h.ServeHTTP(rec, r)
			w.Header().Set("Content-Length", fmt.Sprint(rec.buf.Len()))
			w.WriteHeader(http.StatusOK)
			w.Write(rec.buf.Bytes()[:rec.buf.Len()/2])
			w.(http.Flusher).Flush()
			select {
			case stalled <- struct{}{}:
			default:
			}
			<-r.Context().Done()
		})
	}
	e := setup(t, wrap)
	mark2 := marker + "-AFTER-RESTART"
	initrd2 := e.put(t, "eri", makeInitramfs(t, filepath.Dir(e.state), lab.Busybox(t), mark2), "raw")
	slow = "/sha256/" + strings.TrimPrefix(initrd2.Digest, "sha256:")

	a := e.startAgent(t, e.ctl.Token(t, "zone-e2e"))
	node := e.waitNode(t)
	id := "i-e2e" + hex.EncodeToString(randBytes(3))
	e.ctl.Ledger.Launch(node, e.spec(id, "d0:0d:e2:e0:00:02", initrd2))
	partial := filepath.Join(e.state, "images", "partial", strings.TrimPrefix(initrd2.Digest, "sha256:"))
	select {
	case <-stalled:
	case <-time.After(stateWait):
		t.Fatal("the ramdisk download never started")
	}
	waitFile(t, partial, initrd2.Size/2)
	a.kill()
	if st, _ := e.ctl.Ledger.Status(id); st.State != nodeapi.StatePending {
		t.Fatalf("before the kill the instance was %q, want pending", st.State)
	}

	a = e.startAgent(t, "") // enrolled: the state dir is enough now
	e.ctl.Ledger.WaitState(t, id, nodeapi.StateRunning, bootWait)
	e.waitMarker(t, id, mark2)

	// Killed while the guest runs: the guest goes on, and the restarted
	// agent adopts the domain: it reboots it on request (the guest prints
	// its marker a second time) and terminates it.
	a.kill()
	e.startAgent(t, "")
	e.ctl.Ledger.Reboot(id)
	e.ctl.Ledger.Wait(t, id, bootWait, "reboot and second marker", func(s nodeapi.InstanceStatus, con []byte) bool {
		return s.RebootSerial == 1 && bytes.Count(con, []byte(mark2)) >= 2
	})
	e.terminate(t, id)
}

// capture records a handler's full answer.
type capture struct {
	header http.Header
	buf    bytes.Buffer
}

func (c *capture) Header() http.Header         { return c.header }
func (c *capture) Write(b []byte) (int, error) { return c.buf.Write(b) }
func (c *capture) WriteHeader(int)             {}

func waitFile(t *testing.T, path string, size int64) {
	t.Helper()
	deadline := time.Now().Add(stateWait)
	for time.Now().Before(deadline) {
		if fi, err := os.Stat(path); err == nil && fi.Size() >= size {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s never reached %d bytes", path, size)
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}
