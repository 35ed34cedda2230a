package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"ironbark/images/blobstore"
	"ironbark/internal/lab"
	"ironbark/internal/store"
	"ironbark/pxe"
	"ironbark/pxe/bootapi"
)

// benchHTTP measures the aggregate throughput of many concurrent image
// downloads, as installing nodes make them: ironbark's boot server (the
// appliance image route, from its blob store) against nginx-light serving
// the same blob file, from a client namespace behind the lab bridge. Each
// stream fetches the image in two parts, as an interrupted install
// resumes: a plain GET dropped halfway, then a Range request with If-Range
// for the rest. Servers alternate rounds; the median counts.
func benchHTTP(ctx context.Context, e *env, o options) error {
	ln := lab.NewLabNet(e, "10.213.0.1/24")
	cli := lab.NewNetNS(e)
	cliIf := ln.NS.Link(e, ln.Bridge, cli)
	cli.AddAddr(e, cliIf, netip.MustParsePrefix("10.213.0.2/24"))
	dir, err := os.MkdirTemp("", "pxebench-http")
	if err != nil {
		return err
	}
	e.Cleanup(func() { os.RemoveAll(dir) })
	size := int64(o.httpMiB) << 20
	img := filepath.Join(dir, "compute.img")
	data := make([]byte, size)
	rand.Read(data)
	if err := os.WriteFile(img, data, 0o644); err != nil {
		return err
	}
	data = nil
	self, err := os.Executable()
	if err != nil {
		return err
	}
	// ironbark's boot server ingests the image (as `ironbark pxe image`
	// does) and prints the image's URL path once it serves.
	ourIP, ngxIP := ln.Addr.Addr(), ln.Addr.Addr().Next().Next()
	ln.NS.AddAddr(e, ln.Bridge, netip.PrefixFrom(ngxIP, ln.Addr.Bits()))
	args := []string{"-serve-http", net.JoinHostPort(ourIP.String(), "8080"), "-serve-http-dir", dir, "-serve-http-image", img}
	if o.cpuProfile != "" {
		args = append(args, "-cpuprofile", o.cpuProfile+".http")
	}
	ours := ln.NS.Start(e, self, args...)
	defer stopProcess(ours)
	var path string
	for range 600 {
		for _, line := range strings.Split(ours.Output(), "\n") {
			if p, ok := strings.CutPrefix(line, "serving "); ok {
				path = p
			}
		}
		if path != "" {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if path == "" {
		return fmt.Errorf("ironbark http server did not start:\n%s", ours.Output())
	}
	// nginx serves the blob store's own file under the same path.
	conf := filepath.Join(dir, "nginx.conf")
	if err := os.MkdirAll(filepath.Join(dir, "nginx-tmp"), 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(conf, []byte(nginxConf(dir, net.JoinHostPort(ngxIP.String(), "8080"))), 0o644); err != nil {
		return err
	}
	ngx := ln.NS.Start(e, "nginx", "-c", conf, "-p", dir)
	defer stopProcess(ngx)

	type server struct {
		name string
		url  string
		proc *lab.Process
	}
	servers := []server{
		{"ironbark", "http://" + net.JoinHostPort(ourIP.String(), "8080") + path, ours},
		{"nginx", "http://" + net.JoinHostPort(ngxIP.String(), "8080") + path, ngx},
	}
	fmt.Printf("http: %d MiB image, each stream a GET dropped halfway then a Range request for the rest, client in a namespace behind the bridge, median of %d rounds, servers alternating\n",
		o.httpMiB, o.httpRounds)
	for _, streams := range []int{32, 128} {
		rates := make([][]float64, len(servers))
		for round := range o.httpRounds + 1 {
			for i, sv := range servers {
				r, err := httpRound(ctx, cli, self, sv.url, streams, size)
				if err != nil {
					return fmt.Errorf("%s, %d streams: %w\n%s", sv.name, streams, err, sv.proc.Output())
				}
				if round > 0 { // the first round warms the page cache and the servers
					rates[i] = append(rates[i], r)
				}
			}
		}
		a, b := median(rates[0]), median(rates[1])
		fmt.Printf("http %3d streams   ironbark %7.1f MB/s  nginx %7.1f MB/s  ratio %s  (rounds: %s vs %s)\n",
			streams, a/1e6, b/1e6, ratio(a, b), list(rates[0], 1e6), list(rates[1], 1e6))
	}
	return nil
}

func nginxConf(dir, listen string) string {
	tmp := filepath.Join(dir, "nginx-tmp")
	return fmt.Sprintf(`# pxebench: nginx-light serving the blob store's images
user root;
worker_processes auto;
daemon off;
pid %[1]s/nginx.pid;
error_log %[1]s/nginx-error.log warn;
events { worker_connections 4096; }
http {
	access_log off;
	sendfile on;
	tcp_nopush on;
	keepalive_timeout 65;
	default_type application/octet-stream;
	client_body_temp_path %[2]s/body;
	proxy_temp_path %[2]s/proxy;
	fastcgi_temp_path %[2]s/fastcgi;
	uwsgi_temp_path %[2]s/uwsgi;
	scgi_temp_path %[2]s/scgi;
	server {
		listen %[3]s;
		location %[4]ssha256/ { alias %[1]s/blobs/sha256/; }
	}
}
`, dir, tmp, listen, bootapi.PathImages)
}

// httpRound runs one round of streams concurrent downloads from a client
// process in ns (pxebench -http-get) and returns bytes per second.
func httpRound(ctx context.Context, ns *lab.NetNS, self, url string, streams int, size int64) (float64, error) {
	out, err := ns.Command(ctx, self, "-http-get", url, "-http-streams", strconv.Itoa(streams), "-http-size", strconv.FormatInt(size, 10)).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return 0, fmt.Errorf("client: %w\n%s", err, ee.Stderr)
		}
		return 0, fmt.Errorf("client: %w", err)
	}
	var r struct{ Rate float64 }
	if err := json.Unmarshal(out, &r); err != nil {
		return 0, fmt.Errorf("client output %q: %w", out, err)
	}
	return r.Rate, nil
}

// httpGet is the client process: streams downloads of url at once, each
// a GET read halfway and dropped, then a Range request with If-Range for
// the rest; it checks statuses and sizes and prints {"Rate": bytes/s}.
func httpGet(url string, streams int, size int64) error {
	tr := &http.Transport{MaxIdleConnsPerHost: streams, MaxConnsPerHost: 0, DisableCompression: true}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	var wg sync.WaitGroup
	errs := make(chan error, streams)
	start := time.Now()
	for range streams {
		wg.Go(func() {
			if err := resumedGet(c, url, size); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(struct{ Rate float64 }{float64(size) * float64(streams) / elapsed.Seconds()})
}

func resumedGet(c *http.Client, url string, size int64) error {
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	half := size / 2
	n, err := io.CopyN(io.Discard, resp.Body, half)
	etag := resp.Header.Get("ETag")
	resp.Body.Close() // dropped halfway: the connection goes
	if err != nil || resp.StatusCode != http.StatusOK || resp.ContentLength != size || etag == "" {
		return fmt.Errorf("GET %s: %s, length %d, ETag %q, read %d: %v", url, resp.Status, resp.ContentLength, etag, n, err)
	}
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Range", fmt.Sprintf("bytes=%d-", half))
	req.Header.Set("If-Range", etag)
	resp, err = c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	want := fmt.Sprintf("bytes %d-%d/%d", half, size-1, size)
	n, err = io.Copy(io.Discard, resp.Body)
	if err != nil || resp.StatusCode != http.StatusPartialContent || resp.Header.Get("Content-Range") != want || n != size-half {
		return fmt.Errorf("resume %s: %s, Content-Range %q (want %q), read %d of %d: %v", url, resp.Status,
			resp.Header.Get("Content-Range"), want, n, size-half, err)
	}
	return nil
}

// serveHTTP is the benchmark's ironbark boot server process: a store
// and blob store in dir, image ingested as the compute appliance's, the
// boot server's routes on addr. It prints "serving PATH" (the image's
// URL path) once it listens, and stops on SIGINT or SIGTERM.
func serveHTTP(ctx context.Context, addr, dir, image string) error {
	db, err := store.Open(ctx, filepath.Join(dir, "ironbark.db"))
	if err != nil {
		return err
	}
	defer db.Close()
	if err := db.Migrate(ctx, pxe.Migrations()); err != nil {
		return err
	}
	blobs, err := blobstore.Open(dir)
	if err != nil {
		return err
	}
	images := &pxe.BlobImages{DB: db, Blobs: blobs}
	d, _, err := images.Set(ctx, "compute", image)
	if err != nil {
		return err
	}
	// The route serves appliance images only; the blob store keeps the
	// file at blobs/sha256/<hex>, where nginx finds it too.
	boot := &pxe.HTTPBoot{Images: images, Log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	var lc net.ListenConfig
	l, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: boot.Handler(), ReadHeaderTimeout: 30 * time.Second}
	stop := context.AfterFunc(ctx, func() { srv.Close() })
	defer stop()
	fmt.Println("serving " + blobstore.URLPath(bootapi.PathImages, d))
	if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
