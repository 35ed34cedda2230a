package tftp

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/pin/tftp/v3"

	"ironbark/internal/lab"
)

// serve starts a server on a random loopback port and returns its address.
func serve(t testing.TB, s *Server) string {
	t.Helper()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, conn) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return conn.LocalAddr().String()
}

func fixture(t *testing.T) (*Server, string, []byte) {
	t.Helper()
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	big := make([]byte, 3<<20+123)
	rand.Read(big)
	must(t, os.MkdirAll(filepath.Join(root, "sub"), 0o755))
	must(t, os.WriteFile(filepath.Join(root, "undionly.kpxe"), big, 0o644))
	must(t, os.WriteFile(filepath.Join(root, "sub", "small.txt"), []byte("hello\n"), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "secret"), []byte("outside"), 0o644))
	must(t, os.Symlink("../secret", filepath.Join(root, "escape")))
	must(t, os.Symlink("/etc/hostname", filepath.Join(root, "abs-escape")))
	must(t, os.Symlink("sub/small.txt", filepath.Join(root, "inside-link")))
	s, err := New(Config{Root: root, Logger: slog.New(slog.NewTextHandler(os.Stderr, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, root, big
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// get fetches name with the pin/tftp client and returns content and the
// announced tsize.
func get(addr, name string, blksize int) ([]byte, int64, error) {
	c, err := tftp.NewClient(addr)
	if err != nil {
		return nil, 0, err
	}
	if blksize > 0 {
		c.SetBlockSize(blksize)
	}
	c.RequestTSize(true)
	wt, err := c.Receive(name, "octet")
	if err != nil {
		return nil, 0, err
	}
	size, _ := wt.(tftp.IncomingTransfer).Size()
	var buf bytes.Buffer
	_, err = wt.WriteTo(&buf)
	return buf.Bytes(), size, err
}

func TestServeFiles(t *testing.T) {
	s, _, big := fixture(t)
	must(t, s.Add("boot/menu.ipxe", []byte("#!ipxe\nchain http://x/\n")))
	must(t, s.AddFunc("whoami", func(_ context.Context, r net.UDPAddr) ([]byte, error) {
		return []byte(r.IP.String()), nil
	}))
	must(t, s.AddFunc("broken", func(context.Context, net.UDPAddr) ([]byte, error) { return nil, errors.New("boom") }))
	addr := serve(t, s)

	for _, bs := range []int{0, 1024, 1468, 8192} {
		got, size, err := get(addr, "undionly.kpxe", bs)
		if err != nil || !bytes.Equal(got, big) || size != int64(len(big)) {
			t.Fatalf("blksize %d: %d bytes, tsize %d, err %v", bs, len(got), size, err)
		}
	}
	for name, want := range map[string]string{
		"sub/small.txt": "hello\n", "./sub//small.txt": "hello\n", "inside-link": "hello\n",
		"boot/menu.ipxe": "#!ipxe\nchain http://x/\n", "whoami": "127.0.0.1",
	} {
		got, _, err := get(addr, name, 0)
		if err != nil || string(got) != want {
			t.Errorf("%s: %q %v, want %q", name, got, err, want)
		}
	}
	for _, name := range []string{"../secret", "/etc/hostname", "sub/../../secret", "escape", "abs-escape",
		"missing", "sub", "broken", `sub\small.txt`} {
		if got, _, err := get(addr, name, 0); err == nil {
			t.Errorf("%s: served %q, want refusal", name, got)
		}
	}
	// Writes are refused.
	c, _ := tftp.NewClient(addr)
	rf, err := c.Send("upload", "octet")
	if err == nil {
		_, err = rf.ReadFrom(strings.NewReader("data"))
	}
	if err == nil {
		t.Error("write accepted")
	}
	if !s.Has("undionly.kpxe") || s.Has("snponly.efi") || !s.Has("boot/menu.ipxe") {
		t.Error("Has")
	}
}

func TestManyClients(t *testing.T) {
	s, _, big := fixture(t)
	addr := serve(t, s)
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for i := range 32 {
		wg.Go(func() {
			got, _, err := get(addr, "undionly.kpxe", 1024+i*16)
			if err == nil && !bytes.Equal(got, big) {
				err = errors.New("content differs")
			}
			if err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestTFTPHPAClient fetches with Debian's tftp-hpa client, as PXE
// firmware would: 512-byte lock-step, no options.
func TestTFTPHPAClient(t *testing.T) {
	lab.Require(t, "tftp")
	s, _, big := fixture(t)
	host, port, _ := net.SplitHostPort(serve(t, s))
	out := filepath.Join(t.TempDir(), "got")
	cmd := exec.Command("tftp", "-m", "binary", host, port, "-c", "get", "undionly.kpxe", out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("tftp get: %v\n%s", err, b)
	}
	got, err := os.ReadFile(out)
	if err != nil || !bytes.Equal(got, big) {
		t.Fatalf("tftp-hpa got %d bytes (%v), want %d", len(got), err, len(big))
	}
	bad := filepath.Join(t.TempDir(), "bad")
	b, _ := exec.Command("tftp", "-m", "binary", host, port, "-c", "get", "../secret", bad).CombinedOutput()
	if got, _ := os.ReadFile(bad); len(got) > 0 || !strings.Contains(strings.ToLower(string(b)), "error") {
		t.Fatalf("tftp-hpa ../secret: %q, output %s", got, b)
	}
}

func TestClean(t *testing.T) {
	for in, want := range map[string]string{"a": "a", "a/./b": "a/b", "a//b": "a/b", "pxelinux.cfg/default": "pxelinux.cfg/default"} {
		if got, err := Clean(in); err != nil || got != want {
			t.Errorf("Clean(%q) = %q, %v", in, got, err)
		}
	}
	for _, in := range []string{"", ".", "/a", "..", "a/..", "a/../b", "a\x00b", `a\b`} {
		if _, err := Clean(in); !errors.Is(err, ErrBadPath) {
			t.Errorf("Clean(%q): %v, want ErrBadPath", in, err)
		}
	}
}
