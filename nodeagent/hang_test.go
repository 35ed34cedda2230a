package nodeagent

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"ironbark/controller/cluster"
	"ironbark/controller/cluster/clustertest"
	"ironbark/internal/lab"
	"ironbark/internal/nodeapi"
)

// freezer is a unix socket proxy to libvirtd that can stop passing bytes:
// a libvirtd that hangs, as the agent sees it, without touching the
// libvirtd other tests share.
type freezer struct {
	ln     net.Listener
	target string

	mu     sync.Mutex
	cond   *sync.Cond
	frozen bool
	conns  []net.Conn
}

func newFreezer(t *testing.T, target string) *freezer {
	t.Helper()
	path := filepath.Join(t.TempDir(), "libvirt-sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	f := &freezer{ln: ln, target: target}
	f.cond = sync.NewCond(&f.mu)
	go f.serve()
	t.Cleanup(func() {
		f.freeze(false)
		ln.Close()
		f.mu.Lock()
		for _, c := range f.conns {
			c.Close()
		}
		f.mu.Unlock()
	})
	return f
}

func (f *freezer) uri() string { return "qemu+unix:///system?socket=" + f.ln.Addr().String() }

func (f *freezer) freeze(on bool) {
	f.mu.Lock()
	f.frozen = on
	f.cond.Broadcast()
	f.mu.Unlock()
}

func (f *freezer) serve() {
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("unix", f.target)
		if err != nil {
			c.Close()
			continue
		}
		f.mu.Lock()
		f.conns = append(f.conns, c, up)
		f.mu.Unlock()
		go f.pipe(up, c)
		go f.pipe(c, up)
	}
}

func (f *freezer) pipe(dst, src net.Conn) {
	buf := make([]byte, 64<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			f.mu.Lock()
			for f.frozen {
				f.cond.Wait()
			}
			f.mu.Unlock()
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if err != io.EOF {
				dst.Close()
			}
			return
		}
	}
}

// TestHungLibvirtKeepsHeartbeats is issue 9's "a libvirt call that hangs
// while heartbeats continue": libvirtd (a real one, behind a proxy) stops
// answering mid-run; the agent's libvirt calls time out, the hypervisor
// counts as unreachable, and heartbeats keep reaching the controller.
func TestHungLibvirtKeepsHeartbeats(t *testing.T) {
	lab.Libvirt(t)
	sock := "/run/libvirt/libvirt-sock"
	if _, err := os.Stat(sock); err != nil {
		t.Fatalf("libvirtd runs but its socket is not at %s: %v", sock, err)
	}
	fz := newFreezer(t, sock)
	ctl := clustertest.Start(t, clustertest.NewLedger(), cluster.Config{HeartbeatInterval: time.Second, DesiredPoll: 50 * time.Millisecond})
	r := &rig{ctl: ctl, blobs: &blobServer{blobs: map[string][]byte{}}, state: t.TempDir()}
	r.token = ctl.Token(t, "zone-a")
	var logs syncBuf
	r.startAgentWith(t, func(c *Config) {
		c.LibvirtURI = fz.uri()
		c.LibvirtTimeout = 2 * time.Second
		c.Logger = loggerTo(&logs)
	})
	ctx := context.Background()
	lastBeat := func() time.Time {
		n, err := ctl.Node(ctx, r.node)
		if err != nil {
			t.Fatal(err)
		}
		return n.LastHeartbeat
	}
	// Heartbeats arrive while libvirt answers...
	waitBeats(t, lastBeat, 2)
	// ...and go on after it stops answering.
	fz.freeze(true)
	waitFor(t, "the agent to notice libvirt hangs", func() bool { return strings.Contains(logs.String(), "hypervisor unreachable") })
	waitBeats(t, lastBeat, 3)
	// A launch asked for meanwhile waits (pending), it is not lost.
	ctl.Ledger.Launch(r.node, r.spec("i-hang0001", r.blobs.add([]byte("disk"))))
	ctl.Ledger.WaitState(t, "i-hang0001", nodeapi.StatePending, wait)
	waitBeats(t, lastBeat, 2)
	fz.freeze(false)
	waitFor(t, "the agent to reach libvirt again", func() bool { return strings.Contains(logs.String(), "hypervisor reachable again") })
	ctl.Ledger.SetDesired("i-hang0001", nodeapi.StateTerminated)
	ctl.Ledger.WaitState(t, "i-hang0001", nodeapi.StateTerminated, wait)
}

// waitBeats waits for n more heartbeats to be recorded.
func waitBeats(t *testing.T, last func() time.Time, n int) {
	t.Helper()
	prev := last()
	for i := 0; i < n; i++ {
		waitFor(t, "a heartbeat", func() bool {
			if l := last(); l.After(prev) {
				prev = l
				return true
			}
			return false
		})
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// syncBuf collects log output from several goroutines.
type syncBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func loggerTo(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
