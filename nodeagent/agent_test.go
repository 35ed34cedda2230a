package nodeagent

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"libvirt.org/go/libvirt"

	"ironbark/controller/cluster"
	"ironbark/controller/cluster/clustertest"
	"ironbark/internal/nodeapi"
)

// blobServer serves byte slices by digest, as the image store does.
type blobServer struct {
	mu    sync.Mutex
	blobs map[string][]byte
}

func (b *blobServer) add(data []byte) nodeapi.Artifact {
	sum := sha256.Sum256(data)
	d := "sha256:" + hex.EncodeToString(sum[:])
	b.mu.Lock()
	b.blobs[d] = data
	b.mu.Unlock()
	return nodeapi.Artifact{ID: "emi-" + d[7:15], Digest: d, Size: int64(len(data)), URL: nodeapi.PathBlobs + "sha256/" + d[7:], Format: "raw"}
}

func (b *blobServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b.mu.Lock()
	data, ok := b.blobs["sha256:"+strings.TrimPrefix(r.URL.Path, nodeapi.PathBlobs+"sha256/")]
	b.mu.Unlock()
	if !ok {
		http.NotFound(w, r)
		return
	}
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(data))
}

type rig struct {
	ctl   *clustertest.Controller
	blobs *blobServer
	state string
	token string
	node  string
	stop  func()
}

func testLogger(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func newRig(t *testing.T) *rig {
	t.Helper()
	// test:///default keeps its domains only while a connection is open:
	// hold one for the whole test, as a real libvirtd would keep them.
	conn, err := libvirt.NewConnect("test:///default")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	bs := &blobServer{blobs: map[string][]byte{}}
	ctl := clustertest.Start(t, clustertest.NewLedger(), cluster.Config{Blobs: bs, DesiredPoll: 50 * time.Millisecond})
	r := &rig{ctl: ctl, blobs: bs, state: t.TempDir()}
	r.token = ctl.Token(t, "zone-a")
	return r
}

// startAgent runs an agent on test:///default until the returned func or
// the test's end stops it.
func (r *rig) startAgent(t *testing.T) {
	t.Helper()
	r.startAgentOn(t, "test:///default")
}

func (r *rig) startAgentOn(t *testing.T, uri string) {
	t.Helper()
	r.startAgentWith(t, func(c *Config) { c.LibvirtURI = uri })
}

// startAgentWith runs an agent on test:///default with the test's changes
// to its configuration.
func (r *rig) startAgentWith(t *testing.T, change func(*Config)) {
	t.Helper()
	cfg := Config{Controller: r.ctl.URL, Token: r.token, LibvirtURI: "test:///default", StateDir: r.state,
		Logger: testLogger(t), StopTimeout: time.Second, HypervisorGrace: time.Second, Hostname: "node-test"}
	change(&cfg)
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	var once sync.Once
	r.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Error(err)
			}
		})
	}
	t.Cleanup(r.stop)
	deadline := time.Now().Add(20 * time.Second)
	for {
		nodes, _ := r.ctl.Nodes(context.Background(), "zone-a")
		if len(nodes) == 1 {
			r.node = nodes[0].ID
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("agent did not enroll")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (r *rig) spec(id string, img nodeapi.Artifact) nodeapi.InstanceSpec {
	return nodeapi.InstanceSpec{InstanceID: id, AccountID: "000000000001", MAC: "d0:0d:00:00:00:01", Image: img,
		VMType: nodeapi.VMType{Name: "m1.small", Cores: 1, MemoryMiB: 128, DiskGiB: 1}}
}

// domains lists the test driver's domains by name with their state.
func domains(t *testing.T) map[string]libvirt.DomainState {
	t.Helper()
	c, err := libvirt.NewConnect("test:///default")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ds, err := c.ListAllDomains(0)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]libvirt.DomainState{}
	for i := range ds {
		n, _ := ds[i].GetName()
		st, _, _ := ds[i].GetState()
		out[n] = st
		ds[i].Free()
	}
	return out
}

const wait = 30 * time.Second

func TestLifecycle(t *testing.T) {
	r := newRig(t)
	r.startAgent(t)
	l := r.ctl.Ledger
	img := r.blobs.add(bytes.Repeat([]byte("disk"), 1<<16))
	l.Launch(r.node, r.spec("i-life0001", img))
	l.WaitState(t, "i-life0001", nodeapi.StateRunning, wait)
	if st := domains(t)["i-life0001"]; st != libvirt.DOMAIN_RUNNING {
		t.Fatalf("domain state %v, want running", st)
	}
	dir := filepath.Join(r.state, "instances", "i-life0001")
	for _, f := range []string{"root.qcow2", "ephemeral.qcow2", "console.log"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	// The node's capacity reached the controller, and placement sees it.
	zones, err := r.ctl.Zones(context.Background())
	if err != nil || len(zones) != 1 || zones[0].State != cluster.ZoneAvailable || zones[0].Max["m1.small"] == 0 {
		t.Fatalf("zones %+v %v", zones, err)
	}

	l.Reboot("i-life0001")
	l.Wait(t, "i-life0001", wait, "reboot serial 1", func(s nodeapi.InstanceStatus, _ []byte) bool { return s.RebootSerial == 1 })

	l.SetDesired("i-life0001", nodeapi.StateStopped)
	l.WaitState(t, "i-life0001", nodeapi.StateStopped, wait)
	if st := domains(t)["i-life0001"]; st != libvirt.DOMAIN_SHUTOFF {
		t.Fatalf("stopped domain state %v, want shutoff", st)
	}
	l.SetDesired("i-life0001", nodeapi.StateRunning)
	l.WaitState(t, "i-life0001", nodeapi.StateRunning, wait)

	l.SetDesired("i-life0001", nodeapi.StateTerminated)
	l.WaitState(t, "i-life0001", nodeapi.StateTerminated, wait)
	if _, ok := domains(t)["i-life0001"]; ok {
		t.Fatal("terminated instance still has a domain")
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("terminated instance's disks remain: %v", err)
	}
	// The domain that ships with test:///default is not ours: untouched.
	if _, ok := domains(t)["test"]; !ok {
		t.Fatal("the agent removed a domain it does not own")
	}
}

func TestCorruptImageTerminates(t *testing.T) {
	r := newRig(t)
	r.startAgent(t)
	img := r.blobs.add([]byte("good image"))
	img.Digest = "sha256:" + strings.Repeat("ab", 32)
	img.URL = nodeapi.PathBlobs + "sha256/" + strings.Repeat("ab", 32)
	r.blobs.mu.Lock()
	r.blobs.blobs[img.Digest] = []byte("bad image")
	r.blobs.mu.Unlock()
	r.ctl.Ledger.Launch(r.node, r.spec("i-corrupt1", img))
	st := r.ctl.Ledger.WaitState(t, "i-corrupt1", nodeapi.StateTerminated, wait)
	if !strings.Contains(st.Reason, "does not match") {
		t.Fatalf("reason %q, want the digest mismatch", st.Reason)
	}
	if _, ok := domains(t)["i-corrupt1"]; ok {
		t.Fatal("domain left behind")
	}
	ents, _ := os.ReadDir(filepath.Join(r.state, "images", "sha256"))
	if len(ents) != 0 {
		t.Fatal("corrupt image cached")
	}
	// A missing image fails cleanly too.
	img2 := nodeapi.Artifact{ID: "emi-missing", Digest: "sha256:" + strings.Repeat("cd", 32), URL: nodeapi.PathBlobs + "nope"}
	r.ctl.Ledger.Launch(r.node, r.spec("i-missing1", img2))
	st = r.ctl.Ledger.WaitState(t, "i-missing1", nodeapi.StateTerminated, wait)
	if !strings.Contains(st.Reason, "404") {
		t.Fatalf("reason %q, want the 404", st.Reason)
	}
}

// A restarted agent re-adopts its domains and removes the ones the
// controller let go while it was away.
func TestRestartReadopts(t *testing.T) {
	r := newRig(t)
	r.startAgent(t)
	l := r.ctl.Ledger
	img := r.blobs.add(bytes.Repeat([]byte("x"), 4096))
	l.Launch(r.node, r.spec("i-keep0001", img))
	s2 := r.spec("i-drop0001", img)
	s2.MAC = "d0:0d:00:00:00:02"
	l.Launch(r.node, s2)
	l.WaitState(t, "i-keep0001", nodeapi.StateRunning, wait)
	l.WaitState(t, "i-drop0001", nodeapi.StateRunning, wait)
	r.stop()

	l.SetDesired("i-drop0001", nodeapi.StateTerminated)
	r.token = "" // enrolled: the state dir is enough now
	r.startAgent(t)
	l.WaitState(t, "i-drop0001", nodeapi.StateTerminated, wait)
	if _, ok := domains(t)["i-drop0001"]; ok {
		t.Fatal("let-go domain survived the restart")
	}
	if st, _ := l.Status("i-keep0001"); st.State != nodeapi.StateRunning {
		t.Fatalf("kept instance %+v", st)
	}
	if domains(t)["i-keep0001"] != libvirt.DOMAIN_RUNNING {
		t.Fatal("kept domain not running")
	}
	l.SetDesired("i-keep0001", nodeapi.StateTerminated)
	l.WaitState(t, "i-keep0001", nodeapi.StateTerminated, wait)
}

// With libvirt unreachable, a launch waits out the grace period and then
// ends terminated with the reason, not pending forever.
func TestHypervisorDownFailsLaunch(t *testing.T) {
	r := newRig(t)
	r.startAgentOn(t, "qemu+unix:///system?socket="+filepath.Join(t.TempDir(), "no-libvirtd.sock"))
	img := r.blobs.add([]byte("image"))
	r.ctl.Ledger.Launch(r.node, r.spec("i-nohv0001", img))
	st := r.ctl.Ledger.WaitState(t, "i-nohv0001", nodeapi.StateTerminated, wait)
	if !strings.Contains(st.Reason, "hypervisor unavailable") {
		t.Fatalf("reason %q, want the hypervisor", st.Reason)
	}
}

// The controller restarting (same store, data dir and address) is a pause
// for the agent: it reconnects with its certificate, keeps its instances,
// and acts on what was decided while the controller was away.
func TestControllerRestart(t *testing.T) {
	r := newRig(t)
	r.startAgent(t)
	l := r.ctl.Ledger
	img := r.blobs.add([]byte("restart image"))
	l.Launch(r.node, r.spec("i-ctlr0001", img))
	l.WaitState(t, "i-ctlr0001", nodeapi.StateRunning, wait)

	addr := strings.TrimPrefix(r.ctl.URL, "https://")
	cfg := r.ctl.Config
	r.ctl.Stop()
	// Decided while the controller is down (the EC2 side persisted it).
	l.SetDesired("i-ctlr0001", nodeapi.StateTerminated)
	var ln net.Listener
	var err error
	for i := 0; i < 50; i++ { // the old listener's port is free again at once, normally
		if ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	r.ctl = clustertest.StartOn(t, l, cfg, ln)
	l.WaitState(t, "i-ctlr0001", nodeapi.StateTerminated, wait)
	if _, ok := domains(t)["i-ctlr0001"]; ok {
		t.Fatal("domain survived a terminate decided during the controller's restart")
	}
}

// Several agents may share a libvirtd: a domain tagged for another node is
// never adopted nor removed.
func TestOtherNodesDomainsLeftAlone(t *testing.T) {
	r := newRig(t)
	c, err := libvirt.NewConnect("test:///default")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	spec := r.spec("i-other001", nodeapi.Artifact{})
	x, err := domainPlan{Type: "test", Node: "node-someone-else", Spec: spec, Root: "/nonexistent.qcow2"}.DomainXML()
	if err != nil {
		t.Fatal(err)
	}
	d, err := c.DomainDefineXML(x)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { d.Undefine(); d.Free() }()
	r.startAgent(t)
	// A launch on this node proves a full reconcile ran in between.
	img := r.blobs.add([]byte("mine"))
	r.ctl.Ledger.Launch(r.node, r.spec("i-mine0001", img))
	r.ctl.Ledger.WaitState(t, "i-mine0001", nodeapi.StateRunning, wait)
	if _, ok := domains(t)["i-other001"]; !ok {
		t.Fatal("the agent removed another node's domain")
	}
	if st, _ := r.ctl.Ledger.Status("i-other001"); st.State != "" {
		t.Fatalf("the agent reported another node's instance: %+v", st)
	}
	r.ctl.Ledger.SetDesired("i-mine0001", nodeapi.StateTerminated)
	r.ctl.Ledger.WaitState(t, "i-mine0001", nodeapi.StateTerminated, wait)
}

// An image source that is down (the controller restarting, say) delays a
// launch, it does not fail it: the agent keeps retrying within
// FetchPatience, beyond its LaunchAttempts, and launches once the source is
// back.
func TestUnreachableImageSourceRetries(t *testing.T) {
	r := newRig(t)
	r.startAgentWith(t, func(c *Config) { c.LaunchAttempts = 1; c.FetchPatience = time.Minute })
	// The source drops every connection until it is "back": the agent sees
	// the EOFs a restarting server gives.
	var up atomic.Bool
	src := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if up.Load() {
			r.blobs.ServeHTTP(w, req)
			return
		}
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
	}))
	t.Cleanup(src.Close)
	img := r.blobs.add([]byte("image behind a source that is down for a while"))
	img.URL = src.URL + img.URL
	r.ctl.Ledger.Launch(r.node, r.spec("i-patient1", img))
	st := r.ctl.Ledger.Wait(t, "i-patient1", wait, "a retry or an end", func(st nodeapi.InstanceStatus, _ []byte) bool {
		return strings.HasPrefix(st.Reason, "retrying") || st.State == nodeapi.StateTerminated
	})
	if st.State != nodeapi.StatePending {
		t.Fatalf("state %q (%s), want pending while the source is down", st.State, st.Reason)
	}
	up.Store(true)
	r.ctl.Ledger.WaitState(t, "i-patient1", nodeapi.StateRunning, wait)
}
