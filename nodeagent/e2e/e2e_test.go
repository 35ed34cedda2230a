package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	sdk "github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"libvirt.org/go/libvirt"

	"ironbark/controller"
	"ironbark/controller/cluster"
	"ironbark/controller/ec2"
	"ironbark/controller/ec2/ec2test"
	"ironbark/images/blobstore"
	"ironbark/internal/lab"
	"ironbark/internal/nodeapi"
	"ironbark/internal/store"
	"ironbark/nodeagent/secgroups"
)

const marker = "IRONBARK-GUEST-OK"

// Guards against hangs, not timing assertions: TCG on two busy cores.
const (
	bootWait  = 3 * time.Minute
	stateWait = 2 * time.Minute
)

// env is a controller (EC2 API, cluster side, image blobs) in-process, and
// the lab around ironbark-node.
type env struct {
	uri, bridge, state, bin string
	db                      *store.DB
	svc                     *cluster.Service
	nodeURL                 string
	ec2                     *sdk.Client
	blobs                   *blobstore.Store
	kernel, initrd          string // eki-, eri- ids
	rootDigest              string
	// What a restarted controller reopens (openController).
	ctlDir, dbPath string
	blobHandler    http.Handler
	stopCtl        func()
	// listen opens the node API listener (default: loopback); the Xen
	// test opens it inside its lab namespace.
	listen func(addr string) (net.Listener, error)
	// instanceSubnet is the controller's instance subnet ("" for the
	// default).
	instanceSubnet string
}

func setup(t testing.TB, blobWrap func(http.Handler) http.Handler) *env {
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
	t.Cleanup(func() { destroyDomainsUnder(t, uri, work) })
	e.bin = buildAgent(t, work)
	e.bridge = makeBridge(t)

	var err error
	if e.blobs, err = blobstore.Open(filepath.Join(work, "blobs")); err != nil {
		t.Fatal(err)
	}
	var blobs http.Handler = e.blobs.HandlerAt(nodeapi.PathBlobs)
	if blobWrap != nil {
		blobs = blobWrap(blobs)
	}
	e.startController(t, work, blobs)
	e.kernel = e.register(t, controller.KindKernel, "kernel", k.Vmlinuz)
	e.initrd = e.register(t, controller.KindRamdisk, "busybox", makeInitramfs(t, work, bb, marker))
	return e
}

// startController runs the EC2 side (controller.Cloud behind the EC2 wire
// server) and the cluster side (cluster.Service on an mTLS listener) over
// one SQLite store, wired to each other as `ironbark controller` does.
func (e *env) startController(t testing.TB, dir string, blobs http.Handler) {
	t.Helper()
	e.ctlDir, e.blobHandler = dir, blobs
	e.dbPath = filepath.Join(dir, "ironbark.db")
	e.openController(t)
}

// openController starts the controller on e.dbPath; once the node
// listener has an address (e.nodeURL) it listens there again, so a
// restarted controller is where the agent looks for it. stopController
// ends it.
func (e *env) openController(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	log := testLog(t)
	db, err := store.Open(ctx, e.dbPath)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	stopped := false
	done := make(chan struct{}, 2)
	var srv *httptest.Server
	e.stopCtl = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if srv != nil {
			srv.Close()
			<-done
			<-done
		}
		db.Close()
	}
	t.Cleanup(e.stopController)
	if err := db.Migrate(ctx, controller.Migrations()); err != nil {
		t.Fatal(err)
	}
	e.db = db
	admin, err := controller.EnsureAdmin(ctx, e.db)
	if err != nil {
		t.Fatal(err)
	}
	var svc *cluster.Service
	cloud, err := controller.New(controller.Config{
		Region: "ironbark", Endpoint: "http://127.0.0.1/", InstanceSubnet: e.instanceSubnet,
		ArtifactURL: func(d string) string {
			return blobstore.URLPath(strings.TrimSuffix(nodeapi.PathBlobs, "/"), blobstore.Digest(d))
		},
		Notify: func(node string) { svc.Notify(node) },
	}, e.db, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	svc, err = cluster.New(ctx, cluster.Config{DB: e.db, DataDir: e.ctlDir, Ledger: cloud, Logger: log, Blobs: e.blobHandler})
	if err != nil {
		t.Fatal(err)
	}
	cloud.SetPlacer(svc)
	e.svc = svc
	addr := "127.0.0.1:0"
	if e.nodeURL != "" {
		addr = strings.TrimPrefix(e.nodeURL, "https://")
	} else if err := svc.AddCluster(ctx, "zone-e2e", "GREEDY"); err != nil {
		t.Fatal(err)
	}
	listen := e.listen
	if listen == nil {
		listen = func(addr string) (net.Listener, error) { return net.Listen("tcp", addr) }
	}
	ln, err := listen(addr)
	if err != nil {
		t.Fatal(err)
	}
	e.nodeURL = "https://" + ln.Addr().String()
	key, err := controller.TokenKey(ctx, e.db)
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	srv = httptest.NewServer(ec2.NewServer(ec2.Config{Handler: cloud, Credentials: cloud, Logger: log, TokenKey: key}))
	go func() { _ = svc.Serve(ctx, ln); done <- struct{}{} }()
	go func() { _ = svc.Run(ctx); done <- struct{}{} }()
	e.ec2 = sdk.New(sdk.Options{
		// The buffering transport avoids aws-sdk-go-v2#2737 (a body read
		// cut by "use of closed network connection"; see ec2test.Client).
		HTTPClient:   &http.Client{Transport: ec2test.BufferingTransport{Next: http.DefaultTransport}},
		Region:       "ironbark",
		BaseEndpoint: aws.String(srv.URL + "/services/compute"),
		Credentials:  credentials.NewStaticCredentialsProvider(admin.AccessKey, admin.SecretKey, ""),
	})
}

// stopController stops the controller as a crash would leave the node:
// listeners closed, loops ended, store closed. The agent is not told.
func (e *env) stopController() {
	if e.stopCtl != nil {
		e.stopCtl()
	}
}

// register puts a file in the image store and registers it as an image.
func (e *env) register(t testing.TB, kind, name, path string) string {
	t.Helper()
	ctx := context.Background()
	d, n, err := e.blobs.PutFile(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	id, err := controller.RegisterStoredImage(ctx, e.db, controller.ImageRecord{Name: name + "-" + d.Hex()[:8], Kind: kind,
		Digest: string(d), Size: n, Public: true})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// machineImage registers an EMI (a 1 MiB raw root the guest never reads)
// with the kernel and the given ramdisk.
func (e *env) machineImage(t testing.TB, ramdisk string) string {
	return e.machineImageSize(t, ramdisk, 1<<20)
}

// machineImageSize is machineImage with a root of size bytes (not sparse:
// copying it would show).
func (e *env) machineImageSize(t testing.TB, ramdisk string, size int) string {
	t.Helper()
	root := filepath.Join(filepath.Dir(e.state), "root.img")
	if err := os.WriteFile(root, bytes.Repeat([]byte("ironbark"), size/8), 0o644); err != nil {
		t.Fatal(err)
	}
	return e.machineImageFrom(t, ramdisk, root)
}

// machineImageFrom registers the file root as an EMI with the kernel and
// the given ramdisk.
func (e *env) machineImageFrom(t testing.TB, ramdisk, root string) string {
	t.Helper()
	ctx := context.Background()
	d, n, err := e.blobs.PutFile(ctx, root)
	if err != nil {
		t.Fatal(err)
	}
	id, err := controller.RegisterStoredImage(ctx, e.db, controller.ImageRecord{Name: "tiny-" + ramdisk + "-" + d.Hex()[:8], Digest: string(d),
		Size: n, KernelID: e.kernel, RamdiskID: ramdisk, Public: true})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func testLog(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return slog.New(slog.DiscardHandler)
}

func buildAgent(t testing.TB, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "ironbark-node")
	cmd := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-o", bin, "ironbark/cmd/ironbark-node")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build ironbark-node: %v\n%s", err, out)
	}
	return bin
}

func makeBridge(t testing.TB) string {
	t.Helper()
	var b [2]byte
	_, _ = rand.Read(b[:])
	name := fmt.Sprintf("ibe%d%s", os.Getpid()%100000, hex.EncodeToString(b[:]))
	if out, err := exec.Command("ip", "link", "add", "name", name, "type", "bridge").CombinedOutput(); err != nil {
		lab.Missing(t, fmt.Sprintf("create bridge: %v: %s", err, out))
	}
	t.Cleanup(func() {
		_ = exec.Command("ip", "link", "del", name).Run()
		// A killed agent leaves its bridge's tables (instances keep
		// their filtering while it is down): the bridge's end is theirs.
		_ = exec.Command("nft", "delete", "table", "inet", secgroups.TableName(name)).Run()
		_ = exec.Command("nft", "delete", "table", "bridge", "ironbark-"+name).Run()
	})
	if out, err := exec.Command("ip", "link", "set", "dev", name, "up").CombinedOutput(); err != nil {
		t.Fatalf("bridge up: %v: %s", err, out)
	}
	return name
}

// makeInitramfs builds a gzipped newc cpio whose /init prints the marker to
// the serial console and then idles.
func makeInitramfs(t testing.TB, dir, busybox, mark string) string {
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

func (e *env) startAgent(t testing.TB, token string, extra ...string) *agent {
	t.Helper()
	logf, err := os.CreateTemp(filepath.Dir(e.state), "agent-*.log")
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"--controller", e.nodeURL, "--libvirt", e.uri, "--state-dir", e.state,
		"--bridge", e.bridge, "--domain-type", "qemu", "--stop-timeout", "2s", "--log-level", "debug"}
	if token != "" {
		args = append(args, "--token", token)
	}
	args = append(args, extra...)
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

func (e *env) token(t testing.TB) string {
	t.Helper()
	tok, err := e.svc.NewToken(context.Background(), e.svc.CA(), "zone-e2e", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// waitZone waits until the enrolled node's capacity shows in
// DescribeAvailabilityZones.
func (e *env) waitZone(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(stateWait)
	for time.Now().Before(deadline) {
		zs, err := e.ec2.DescribeAvailabilityZones(context.Background(), &sdk.DescribeAvailabilityZonesInput{})
		if err == nil && len(zs.AvailabilityZones) == 1 && aws.ToString(zs.AvailabilityZones[0].ZoneName) == "zone-e2e" &&
			zs.AvailabilityZones[0].State == types.AvailabilityZoneStateAvailable {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("zone-e2e never became available: the agent did not enroll")
}

// run launches one instance of image through the EC2 API.
func (e *env) run(t testing.TB, image string) string {
	return e.runN(t, image, 1)[0]
}

// runN launches n instances of image in one RunInstances call.
func (e *env) runN(t testing.TB, image string, n int) []string {
	t.Helper()
	out, err := e.ec2.RunInstances(context.Background(), &sdk.RunInstancesInput{
		ImageId: aws.String(image), InstanceType: types.InstanceTypeM1Small, MinCount: aws.Int32(int32(n)), MaxCount: aws.Int32(int32(n)),
		Placement: &types.Placement{AvailabilityZone: aws.String("zone-e2e")},
	})
	if err != nil {
		t.Fatalf("RunInstances: %v", err)
	}
	var ids []string
	for _, in := range out.Instances {
		ids = append(ids, aws.ToString(in.InstanceId))
	}
	return ids
}

func (e *env) instState(t testing.TB, id string) (types.InstanceStateName, string) {
	t.Helper()
	out, err := e.ec2.DescribeInstances(context.Background(), &sdk.DescribeInstancesInput{InstanceIds: []string{id}})
	if err != nil {
		t.Fatalf("DescribeInstances: %v", err)
	}
	in := out.Reservations[0].Instances[0]
	reason := aws.ToString(in.StateTransitionReason)
	if in.StateReason != nil {
		reason = aws.ToString(in.StateReason.Message)
	}
	return in.State.Name, reason
}

func (e *env) waitState(t testing.TB, id string, want types.InstanceStateName, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		st, reason := e.instState(t, id)
		if st == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: state %s (%s), want %s", id, st, reason, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// console is GetConsoleOutput, decoded.
func (e *env) console(t testing.TB, id string) []byte {
	t.Helper()
	out, err := e.ec2.GetConsoleOutput(context.Background(), &sdk.GetConsoleOutputInput{InstanceId: aws.String(id)})
	if err != nil {
		t.Fatalf("GetConsoleOutput: %v", err)
	}
	b, err := base64.StdEncoding.DecodeString(aws.ToString(out.Output))
	if err != nil {
		t.Fatalf("console output is not base64: %v", err)
	}
	return b
}

func (e *env) waitMarker(t testing.TB, id, mark string, count int) {
	t.Helper()
	deadline := time.Now().Add(bootWait)
	for {
		con := e.console(t, id)
		if bytes.Count(con, []byte(mark)) >= count {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d× %q not on the console; tail:\n%s", id, count, mark, con[max(0, len(con)-2000):])
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// terminate ends the instance and checks that libvirt has no domain and
// the disks are gone.
func (e *env) terminate(t testing.TB, id string) {
	t.Helper()
	if _, err := e.ec2.TerminateInstances(context.Background(), &sdk.TerminateInstancesInput{InstanceIds: []string{id}}); err != nil {
		t.Fatalf("TerminateInstances: %v", err)
	}
	e.waitState(t, id, types.InstanceStateNameTerminated, stateWait)
	e.assertGone(t, id)
}

// assertGone checks that libvirt has no domain for the instance and its
// disks are gone.
func (e *env) assertGone(t testing.TB, id string) {
	t.Helper()
	c, err := libvirt.NewConnect(e.uri)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if d, err := c.LookupDomainByName(id); err == nil {
		d.Free()
		t.Fatalf("domain %s still defined", id)
	}
	if _, err := os.Stat(filepath.Join(e.state, "instances", id)); !os.IsNotExist(err) {
		t.Fatalf("disks of %s remain: %v", id, err)
	}
}

// TestLaunchAndTerminate boots a real guest through the agent, reads its
// marker from the console tail the agent reports, and terminates it.
func TestLaunchAndTerminate(t *testing.T) {
	e := setup(t, nil)
	e.startAgent(t, e.token(t))
	e.waitZone(t)
	id := e.run(t, e.machineImage(t, e.initrd))
	e.waitState(t, id, types.InstanceStateNameRunning, bootWait)
	e.waitMarker(t, id, marker, 1)
	// The guest runs from disks, kernel and ramdisk nobody else can read:
	// qemu (libvirt-qemu) gets them through libvirt's DAC labels.
	assertPrivate(t, e.state, id)
	e.terminate(t, id)
}

// assertPrivate checks the node's files: nothing under the state dir is
// readable by others, the instance's files are 0600 in a 0700 directory
// that qemu's user owns, and directories above are search-only.
func assertPrivate(t *testing.T, state, id string) {
	t.Helper()
	err := filepath.WalkDir(state, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		m := fi.Mode()
		switch {
		case m.IsDir() && m.Perm()&0o066 != 0:
			t.Errorf("%s: directory mode %v, others may list or write it", p, m.Perm())
		case m.IsRegular() && m.Perm()&0o077 != 0 && !strings.HasSuffix(p, ".crt"):
			t.Errorf("%s: file mode %v, want 0600", p, m.Perm())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(state, "instances", id)
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("%s: mode %v, want 0700", dir, fi.Mode().Perm())
	}
	if u, err := user.Lookup("libvirt-qemu"); err == nil {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && strconv.Itoa(int(st.Uid)) != u.Uid {
			t.Errorf("%s: owner uid %d, want libvirt-qemu's %s", dir, st.Uid, u.Uid)
		}
	}
	for _, f := range []string{"root.qcow2", "ephemeral.qcow2", "console.log"} {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v, want mode 0600", f, fi.Mode(), err)
		}
	}
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
	initrd2 := makeInitramfs(t, filepath.Dir(e.state), lab.Busybox(t), mark2)
	eri2 := e.register(t, controller.KindRamdisk, "busybox2", initrd2)
	d2, err := blobstore.ParseDigest(fileDigest(t, initrd2))
	if err != nil {
		t.Fatal(err)
	}
	slow = nodeapi.PathBlobs + "sha256/" + d2.Hex()

	a := e.startAgent(t, e.token(t))
	e.waitZone(t)
	id := e.run(t, e.machineImage(t, eri2))
	partial := filepath.Join(e.state, "images", "partial", d2.Hex())
	select {
	case <-stalled:
	case <-time.After(stateWait):
		t.Fatal("the ramdisk download never started")
	}
	fi, _ := os.Stat(initrd2)
	waitFile(t, partial, fi.Size()/2)
	a.kill()
	if st, reason := e.instState(t, id); st != types.InstanceStateNamePending {
		t.Fatalf("before the kill the instance was %s (%s), want pending", st, reason)
	}

	a = e.startAgent(t, "") // enrolled: the state dir is enough now
	e.waitState(t, id, types.InstanceStateNameRunning, bootWait)
	e.waitMarker(t, id, mark2, 1)

	// Killed while the guest runs: the guest goes on, and the restarted
	// agent adopts the domain: it reboots it on request (the guest prints
	// its marker a second time) and terminates it.
	a.kill()
	e.startAgent(t, "")
	if _, err := e.ec2.RebootInstances(context.Background(), &sdk.RebootInstancesInput{InstanceIds: []string{id}}); err != nil {
		t.Fatalf("RebootInstances: %v", err)
	}
	e.waitMarker(t, id, mark2, 2)
	e.waitState(t, id, types.InstanceStateNameRunning, stateWait)
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

func waitFile(t testing.TB, path string, size int64) {
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

func fileDigest(t testing.TB, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// TestStartFailureTerminates: a domain that libvirt cannot start (its
// bridge does not exist) ends terminated with libvirt's reason, leaving no
// domain and no disks.
func TestStartFailureTerminates(t *testing.T) {
	e := setup(t, nil)
	e.bridge = fmt.Sprintf("ibnone%d", os.Getpid()%100000)
	e.startAgent(t, e.token(t))
	e.waitZone(t)
	id := e.run(t, e.machineImage(t, e.initrd))
	e.waitState(t, id, types.InstanceStateNameTerminated, stateWait)
	if _, reason := e.instState(t, id); !strings.Contains(reason, e.bridge) {
		t.Fatalf("reason %q does not name the missing bridge", reason)
	}
	e.assertGone(t, id)
}

// destroyDomainsUnder removes every libvirt domain whose disks live under
// dir: a test or benchmark that fails before it terminates its instances
// must not leave guests running on the shared libvirtd.
func destroyDomainsUnder(t testing.TB, uri, dir string) {
	for _, name := range domainsUnder(t, uri, dir) {
		_ = exec.Command("virsh", "-c", uri, "destroy", name).Run()
		_ = exec.Command("virsh", "-c", uri, "undefine", name).Run()
		t.Logf("cleanup: removed leftover domain %s", name)
	}
}

// domainsUnder lists the libvirt domains (running or not) whose disks live
// under dir.
func domainsUnder(t testing.TB, uri, dir string) []string {
	out, err := exec.Command("virsh", "-c", uri, "list", "--all", "--name").Output()
	if err != nil {
		t.Logf("list domains: %v", err)
		return nil
	}
	var names []string
	for _, name := range strings.Fields(string(out)) {
		x, err := exec.Command("virsh", "-c", uri, "dumpxml", name).Output()
		if err == nil && strings.Contains(string(x), dir+"/") {
			names = append(names, name)
		}
	}
	return names
}
