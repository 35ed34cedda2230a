package pxe

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/disk"
	"github.com/diskfs/go-diskfs/filesystem"
	"github.com/diskfs/go-diskfs/partition/mbr"

	"ironbark/installer"
	"ironbark/internal/store"
	"ironbark/internal/store/storetest"
	"ironbark/pxe/bootapi"
	"ironbark/pxe/dhcp"
	"ironbark/pxe/leases"
)

// fatImage writes a whole-disk image with one FAT32 partition, like an
// appliance image, and returns its path.
func fatImage(t *testing.T, dir string) string {
	t.Helper()
	const size = 48 << 20
	p := filepath.Join(dir, "compute.img")
	d, err := diskfs.Create(p, size, diskfs.SectorSizeDefault)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Partition(&mbr.Table{LogicalSectorSize: 512, PhysicalSectorSize: 512, Partitions: []*mbr.Partition{
		{Index: 1, Bootable: true, Type: mbr.Fat32LBA, Start: 2048, Size: size/512 - 2048}}}); err != nil {
		t.Fatal(err)
	}
	fs, err := d.CreateFilesystem(disk.FilesystemSpec{Partition: 1, FSType: filesystem.TypeFat32})
	if err != nil {
		t.Fatal(err)
	}
	w, err := fs.OpenFile("/marker", os.O_CREATE|os.O_RDWR)
	if err != nil {
		t.Fatal(err)
	}
	// Something non-zero through the image so a resumed download that
	// skipped or repeated bytes would fail the digest.
	if _, err := w.Write([]byte(strings.Repeat("ironbark appliance image\n", 200000))); err != nil {
		t.Fatal(err)
	}
	w.Close()
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	return p
}

type bootEnv struct {
	hosts *Hosts
	disc  *Discovery
	boot  *HTTPBoot
	srv   *httptest.Server
	dir   string
}

func newBootEnv(t *testing.T, db *store.DB, wrap func(http.Handler) http.Handler) *bootEnv {
	t.Helper()
	dir := t.TempDir()
	l := Layout{DataDir: dir}
	blobs, err := l.Blobs()
	if err != nil {
		t.Fatal(err)
	}
	imgs := &BlobImages{DB: db, Blobs: blobs}
	if _, _, err := imgs.Set(context.Background(), "compute", fatImage(t, t.TempDir())); err != nil {
		t.Fatal(err)
	}
	e := &bootEnv{hosts: NewHosts(db), dir: dir}
	e.disc = NewDiscovery(db, e.hosts)
	e.srv = httptest.NewUnstartedServer(nil)
	base := "http://" + e.srv.Listener.Addr().String()
	e.boot = &HTTPBoot{Script: ScriptConfig{BaseURL: base}, Hosts: e.hosts, Discovery: e.disc,
		BootDir: l.BootDir(), Images: imgs,
		Identity: StaticIdentity{ControllerURL: "https://10.1.0.1:8774"}, Log: slog.New(slog.DiscardHandler)}
	var h http.Handler = e.boot.Handler()
	if wrap != nil {
		h = wrap(h)
	}
	e.srv.Config.Handler = h
	e.srv.Start()
	t.Cleanup(e.srv.Close)
	return e
}

// dhcp runs the MAC's DHCP exchange through the backend, as the DHCP
// server would (a loopback pool, so the installer can talk from it).
func (e *bootEnv) dhcp(t *testing.T, db *store.DB, mac string) *dhcp.Binding {
	t.Helper()
	ctx := context.Background()
	pool, _ := dhcp.PoolFor(mustPrefix("127.1.0.0/24"))
	ls, err := leases.New(ctx, db, leases.Config{Pool: pool})
	if err != nil {
		t.Fatal(err)
	}
	b := &DHCPBackend{Hosts: e.hosts, Discovery: e.disc, Leases: ls, BaseURL: e.srv.URL, Log: slog.New(slog.DiscardHandler)}
	hw, _ := net.ParseMAC(mac)
	bind, err := b.Assign(ctx, dhcp.ClientInfo{MAC: hw, PXE: true, IsIPXE: true})
	if err != nil {
		t.Fatalf("dhcp for %s: %v", mac, err)
	}
	return bind
}

var attemptRE = regexp.MustCompile(`ironbark\.attempt=([0-9a-f]+)`)

// bootScript fetches a MAC's iPXE script as iPXE would.
func (e *bootEnv) bootScript(t *testing.T, mac string) string {
	t.Helper()
	resp, err := http.Get(e.srv.URL + bootapi.PathScript + mac)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("script for %s: %s %s", mac, resp.Status, b)
	}
	return string(b)
}

func (e *bootEnv) installer(t *testing.T, script string) *installer.Installer {
	t.Helper()
	m := attemptRE.FindStringSubmatch(script)
	if m == nil {
		t.Fatalf("no attempt in script:\n%s", script)
	}
	host := regexp.MustCompile(`ironbark\.host=(\S+)`).FindStringSubmatch(script)[1]
	// The installer talks from the host's own address, as on the wire
	// (the pools of these tests are on loopback).
	client := &http.Client{Timeout: 30 * time.Second}
	if h, err := e.hosts.Get(context.Background(), host); err == nil && h.IP != "" {
		client.Transport = &http.Transport{DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(h.IP)}}).DialContext}
	}
	return &installer.Installer{
		Config:   installer.Config{URL: e.srv.URL, Host: host, Attempt: m[1], Mode: "install"},
		Client:   client,
		Log:      slog.New(slog.DiscardHandler),
		RetryFor: 20 * time.Second,
	}
}

func blankDisk(t *testing.T, size int64) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "disk")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	f.Close()
	return p
}

func readFAT(t *testing.T, diskPath, name string) string {
	t.Helper()
	d, err := diskfs.Open(diskPath, diskfs.WithOpenMode(diskfs.ReadOnly))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	fs, err := d.GetFilesystem(1)
	if err != nil {
		t.Fatal(err)
	}
	b, err := fs.ReadFile(name)
	if err != nil {
		t.Fatalf("read %s from installed disk: %v", name, err)
	}
	return string(b)
}

// TestInstallOverHTTP runs the real installer logic against the boot
// server on loopback: discovery names the MAC, the script starts an
// attempt, the installer writes the image and identity, and the host
// flips to os.
func TestInstallOverHTTP(t *testing.T) {
	storetest.Each(t, Migrations(), func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		e := newBootEnv(t, db, nil)
		const mac = "52:54:00:00:10:01"
		if s := e.bootScript(t, mac); !strings.Contains(s, "not a known host") {
			t.Fatalf("unknown MAC with discovery off got:\n%s", s)
		}
		if _, err := e.hosts.ByMAC(ctx, mac); !errors.Is(err, ErrHostNotFound) {
			t.Fatalf("unknown MAC was recorded: %v", err)
		}
		if _, err := e.disc.Start(ctx, "compute", "c1", 0, 0); err != nil {
			t.Fatal(err)
		}
		// The script alone admits nothing: DHCP does, with an address.
		if s := e.bootScript(t, mac); !strings.Contains(s, "not a known host") {
			t.Fatalf("unknown MAC without DHCP got:\n%s", s)
		}
		e.dhcp(t, db, mac)
		script := e.bootScript(t, mac)
		in := e.installer(t, script)
		if in.Config.Host != "compute-0-0" {
			t.Fatalf("host %q", in.Config.Host)
		}
		disk := blankDisk(t, 64<<20)
		if err := in.Run(ctx, disk); err != nil {
			t.Fatal(err)
		}
		h, _ := e.hosts.Get(ctx, "compute-0-0")
		if h.Boot != BootOS || h.InstallState != InstallInstalled {
			t.Fatalf("after install: %+v", h)
		}
		if got := readFAT(t, disk, "/ironbark/hostname"); got != "compute-0-0\n" {
			t.Fatalf("hostname on disk %q", got)
		}
		if got := readFAT(t, disk, "/ironbark/node.json"); !strings.Contains(got, `"controllerUrl": "https://10.1.0.1:8774"`) {
			t.Fatalf("identity on disk %q", got)
		}
		if got := readFAT(t, disk, "/marker"); !strings.HasPrefix(got, "ironbark appliance image") {
			t.Fatalf("image content on disk %q", got[:min(len(got), 40)])
		}
		// os: the next boot goes to the local disk.
		if s := e.bootScript(t, mac); !strings.Contains(s, "sanboot --no-describe --drive 0x80") {
			t.Fatalf("os script:\n%s", s)
		}
	})
}

// TestInstallFailureKeepsInstall: a bad image digest and a disk too small
// are reported as failures with their reason; the boot action stays
// install.
func TestInstallFailureKeepsInstall(t *testing.T) {
	db := storetest.SQLite(t, Migrations())
	ctx := context.Background()
	e := newBootEnv(t, db, nil)
	if _, err := e.hosts.Add(ctx, AddHost{MAC: "52:54:00:00:10:02", Appliance: "compute", Rank: -1}); err != nil {
		t.Fatal(err)
	}
	in := e.installer(t, e.bootScript(t, "52:54:00:00:10:02"))
	err := in.Run(ctx, blankDisk(t, 1<<20))
	if err == nil || !strings.Contains(err.Error(), "image needs") {
		t.Fatalf("small disk: %v", err)
	}
	h, _ := e.hosts.Get(ctx, "compute-0-0")
	if h.Boot != BootInstall || h.InstallState != InstallFailed || !strings.Contains(h.InstallError, "image needs") {
		t.Fatalf("after failure: %+v", h)
	}
	// Corrupt image: the digest check catches it.
	in = e.installer(t, e.bootScript(t, "52:54:00:00:10:02"))
	p, err := in.Profile(ctx)
	if err != nil {
		t.Fatal(err)
	}
	p.Image.Digest = "sha256:" + strings.Repeat("0", 64)
	err = in.WriteImage(ctx, p.Image, blankDisk(t, 64<<20))
	if err == nil || !strings.Contains(err.Error(), "digest mismatch") {
		t.Fatalf("bad digest: %v", err)
	}
}

// TestFrontendRestartMidInstall cuts the image download halfway, refuses
// connections for a while and then answers from a fresh boot server (no
// state but the store and data dir), as a frontend restart does; the
// installer retries, resumes with a Range request and completes.
func TestFrontendRestartMidInstall(t *testing.T) {
	db := storetest.SQLite(t, Migrations())
	ctx := context.Background()
	var cut, down, ranged atomic.Bool
	var downUntil atomic.Int64
	// cur is the running frontend's handler; the restart replaces it with
	// a fresh boot server that shares only the store and the data dir.
	var cur atomic.Pointer[http.Handler]
	var e *bootEnv
	restart := func() {
		fresh := *e.boot
		blobs, err := Layout{DataDir: e.dir}.Blobs()
		if err != nil {
			panic(err)
		}
		fresh.Images = &BlobImages{DB: db, Blobs: blobs}
		fresh.Hosts = NewHosts(db)
		fresh.Discovery = NewDiscovery(db, fresh.Hosts)
		h := fresh.Handler()
		cur.Store(&h)
	}
	wrap := func(first http.Handler) http.Handler {
		cur.Store(&first)
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			next := *cur.Load()
			if time.Now().UnixNano() < downUntil.Load() {
				down.Store(true)
				// What a client sees while the frontend restarts.
				hj, _ := w.(http.Hijacker)
				c, _, _ := hj.Hijack()
				c.Close()
				return
			}
			if strings.HasPrefix(r.URL.Path, bootapi.PathImages) {
				if r.Header.Get("Range") != "" {
					ranged.Store(true)
				}
				if !cut.Swap(true) {
					next.ServeHTTP(&cutWriter{ResponseWriter: w, left: 10 << 20}, r)
					downUntil.Store(time.Now().Add(1500 * time.Millisecond).UnixNano())
					restart()
					panic(http.ErrAbortHandler)
				}
			}
			next.ServeHTTP(w, r)
		})
	}
	e = newBootEnv(t, db, wrap)
	if _, err := e.hosts.Add(ctx, AddHost{MAC: "52:54:00:00:10:03", Appliance: "compute", Rank: -1}); err != nil {
		t.Fatal(err)
	}
	in := e.installer(t, e.bootScript(t, "52:54:00:00:10:03"))
	disk := blankDisk(t, 64<<20)
	if err := in.Run(ctx, disk); err != nil {
		t.Fatal(err)
	}
	if !cut.Load() || !down.Load() || !ranged.Load() {
		t.Fatalf("cut=%v down=%v ranged=%v: the restart was not exercised", cut.Load(), down.Load(), ranged.Load())
	}
	h, _ := e.hosts.Get(ctx, "compute-0-0")
	if h.Boot != BootOS || h.InstallState != InstallInstalled {
		t.Fatalf("after resumed install: %+v", h)
	}
	if got := readFAT(t, disk, "/ironbark/hostname"); got != "compute-0-0\n" {
		t.Fatalf("hostname on disk %q", got)
	}
}

// cutWriter stops the response after left bytes.
type cutWriter struct {
	http.ResponseWriter
	left int
}

func (c *cutWriter) Write(p []byte) (int, error) {
	if c.left <= 0 {
		return 0, errors.New("cut")
	}
	if len(p) > c.left {
		p = p[:c.left]
	}
	n, err := c.ResponseWriter.Write(p)
	c.left -= n
	if c.left <= 0 {
		c.ResponseWriter.(http.Flusher).Flush()
	}
	return n, err
}

// TestNodeVanishesMidInstall: a node that disappears mid-install and
// PXE-boots again keeps its name and address; the old attempt's late
// reports are refused.
func TestNodeVanishesMidInstall(t *testing.T) {
	storetest.Each(t, Migrations(), func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		e := newBootEnv(t, db, nil)
		pool, _ := dhcp.PoolFor(mustPrefix("127.1.0.0/24"))
		ls, err := leases.New(ctx, db, leases.Config{Pool: pool})
		if err != nil {
			t.Fatal(err)
		}
		b := &DHCPBackend{Hosts: e.hosts, Discovery: e.disc, Leases: ls, BaseURL: e.srv.URL, Log: slog.New(slog.DiscardHandler)}
		mac, _ := net.ParseMAC("52:54:00:00:10:04")
		if _, err := b.Assign(ctx, dhcp.ClientInfo{MAC: mac, PXE: true}); !errors.Is(err, dhcp.ErrIgnore) {
			t.Fatalf("unknown MAC, discovery off: %v, want ErrIgnore", err)
		}
		if _, err := e.disc.Start(ctx, "compute", "c1", 0, 0); err != nil {
			t.Fatal(err)
		}
		first, err := b.Assign(ctx, dhcp.ClientInfo{MAC: mac, PXE: true, IsIPXE: true})
		if err != nil {
			t.Fatal(err)
		}
		if first.Hostname != "compute-0-0" || !pool.Contains(first.IP) || first.BootFile != e.srv.URL+bootapi.PathScript+"52:54:00:00:10:04" {
			t.Fatalf("binding %+v", first)
		}
		old := e.installer(t, e.bootScript(t, mac.String()))
		if err := old.Report(ctx, bootapi.Progress{State: bootapi.StateRunning, Percent: 30, Step: "writing image"}); err != nil {
			t.Fatal(err)
		}
		// The node loses power and PXE-boots again.
		again, err := b.Assign(ctx, dhcp.ClientInfo{MAC: mac, PXE: true, IsIPXE: true})
		if err != nil {
			t.Fatal(err)
		}
		if again.Hostname != first.Hostname || again.IP != first.IP {
			t.Fatalf("after vanishing: %+v, before %+v", again, first)
		}
		fresh := e.installer(t, e.bootScript(t, mac.String()))
		err = old.Report(ctx, bootapi.Progress{State: bootapi.StateDone})
		if err == nil || !strings.Contains(err.Error(), "409") {
			t.Fatalf("old attempt's report: %v, want 409", err)
		}
		if err := fresh.Run(ctx, blankDisk(t, 64<<20)); err != nil {
			t.Fatal(err)
		}
		hs, _ := e.hosts.List(ctx)
		if len(hs) != 1 || hs[0].Name != "compute-0-0" || hs[0].IP != first.IP.String() || hs[0].Boot != BootOS {
			t.Fatalf("hosts after reinstall: %+v", hs)
		}
	})
}
