package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"net/url"
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
// for the rest.
//
// Fairness: both servers listen on the same bridge and serve the same
// file (warm in the page cache after a first, uncounted round each); the
// same client program measures both, and rounds alternate in ABBA order
// (ironbark first in even rounds, nginx first in odd ones), so a load
// that rises or falls over a pair favours neither. The client splices
// each body to /dev/null (zero-copy, -http-client splice) so that it is
// not what limits the rate; -http-client nethttp reads with Go's
// net/http client instead, as the installer does. Besides the median
// rates, the median of the pairwise ratios (each round's two servers,
// adjacent in time) and each server's CPU time per GiB sent are printed:
// on a shared machine they are steadier than either rate.
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
	switch o.httpClient {
	case "splice", "nethttp":
	default:
		return fmt.Errorf("-http-client %q: want splice or nethttp", o.httpClient)
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
	fmt.Printf("http: %d MiB image, each stream a GET dropped halfway then a Range request for the rest, %s client in a namespace behind the bridge, median of %d rounds, servers alternating ABBA; load average %s\n",
		o.httpMiB, o.httpClient, o.httpRounds, loadAvg())
	for _, streams := range []int{32, 128} {
		rates := make([][]float64, len(servers))
		cpu := make([]time.Duration, len(servers))
		var clientCPU time.Duration
		for round := range o.httpRounds + 1 {
			order := []int{0, 1}
			if round%2 == 1 {
				order = []int{1, 0}
			}
			for _, i := range order {
				sv := servers[i]
				cpu0 := treeCPUTime(sv.proc.Cmd.Process.Pid)
				r, ccpu, err := httpRound(ctx, cli, self, sv.url, streams, size, o.httpClient)
				if err != nil {
					return fmt.Errorf("%s, %d streams: %w\n%s", sv.name, streams, err, sv.proc.Output())
				}
				if round > 0 { // the first round warms the page cache and the servers
					rates[i] = append(rates[i], r)
					cpu[i] += treeCPUTime(sv.proc.Cmd.Process.Pid) - cpu0
					clientCPU += ccpu
				}
			}
		}
		pairs := make([]float64, len(rates[0]))
		for j := range pairs {
			pairs[j] = rates[0][j] / rates[1][j]
		}
		a, b := median(rates[0]), median(rates[1])
		gib := float64(o.httpRounds) * float64(streams) * float64(size) / (1 << 30)
		fmt.Printf("http %3d streams   ironbark %7.1f MB/s  nginx %7.1f MB/s  ratio %s  (pairwise: median %.2fx, %s; rounds: %s vs %s; CPU per GiB %.0f vs %.0f ms, client %.0f ms; load %s)\n",
			streams, a/1e6, b/1e6, ratio(a, b), median(pairs), ratios(pairs), list(rates[0], 1e6), list(rates[1], 1e6),
			float64(cpu[0].Milliseconds())/gib, float64(cpu[1].Milliseconds())/gib, float64(clientCPU.Milliseconds())/(2*gib), loadAvg())
	}
	return nil
}

// ratios prints ratios with two decimals.
func ratios(v []float64) string {
	var b strings.Builder
	for i, r := range v {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%.2f", r)
	}
	return b.String()
}

// loadAvg is the 1, 5 and 15 minute load averages, as uptime prints them.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return "unknown"
}

// treeCPUTime is the CPU time of a process and its live children (nginx's
// workers; ironbark has none).
func treeCPUTime(pid int) time.Duration {
	t := cpuTime(pid)
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	for _, f := range strings.Fields(string(b)) {
		if c, err := strconv.Atoi(f); err == nil {
			t += cpuTime(c)
		}
	}
	return t
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
// It also returns the client's CPU time (`ip netns exec` execs the
// client, so the command's process is the client).
func httpRound(ctx context.Context, ns *lab.NetNS, self, url string, streams int, size int64, client string) (float64, time.Duration, error) {
	cmd := ns.Command(ctx, self, "-http-get", url, "-http-streams", strconv.Itoa(streams), "-http-size", strconv.FormatInt(size, 10),
		"-http-client", client)
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return 0, 0, fmt.Errorf("client: %w\n%s", err, ee.Stderr)
		}
		return 0, 0, fmt.Errorf("client: %w", err)
	}
	var r struct{ Rate float64 }
	if err := json.Unmarshal(out, &r); err != nil {
		return 0, 0, fmt.Errorf("client output %q: %w", out, err)
	}
	return r.Rate, cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime(), nil
}

// httpGet is the client process: streams downloads of url at once, each
// a GET read halfway and dropped, then a Range request with If-Range for
// the rest; it checks statuses and sizes and prints {"Rate": bytes/s}.
// client is splice (bodies spliced to /dev/null, see spliceGet) or
// nethttp (Go's net/http client).
func httpGet(rawURL string, streams int, size int64, client string) error {
	get := func() error { return nil }
	switch client {
	case "nethttp":
		tr := &http.Transport{MaxIdleConnsPerHost: streams, MaxConnsPerHost: 0, DisableCompression: true}
		defer tr.CloseIdleConnections()
		c := &http.Client{Transport: tr}
		get = func() error { return resumedGet(c, rawURL, size) }
	case "splice":
		u, err := url.Parse(rawURL)
		if err != nil {
			return err
		}
		if u.Scheme != "http" {
			return fmt.Errorf("%s: the splice client speaks plain http only", rawURL)
		}
		devNull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		defer devNull.Close()
		get = func() error { return resumedSplice(u, devNull, size) }
	default:
		return fmt.Errorf("client %q: want splice or nethttp", client)
	}
	var wg sync.WaitGroup
	errs := make(chan error, streams)
	start := time.Now()
	for range streams {
		wg.Go(func() {
			if err := get(); err != nil {
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

// resumedSplice is resumedGet on connections of its own: the response
// head is parsed by net/http, the body is spliced from the socket to
// /dev/null (os.File.ReadFrom from a TCP connection uses splice(2)), so
// the bytes are never copied to user space and the client costs little
// next to the server it measures.
func resumedSplice(u *url.URL, devNull *os.File, size int64) error {
	half := size / 2
	resp, n, err := spliceFetch(u, devNull, nil, half)
	if err != nil {
		return fmt.Errorf("GET %s: %w", u, err)
	}
	etag := resp.Header.Get("ETag")
	if resp.StatusCode != http.StatusOK || resp.ContentLength != size || etag == "" || n != half {
		return fmt.Errorf("GET %s: %s, length %d, ETag %q, read %d of %d", u, resp.Status, resp.ContentLength, etag, n, half)
	}
	h := http.Header{}
	h.Set("Range", fmt.Sprintf("bytes=%d-", half))
	h.Set("If-Range", etag)
	resp, n, err = spliceFetch(u, devNull, h, -1)
	if err != nil {
		return fmt.Errorf("resume %s: %w", u, err)
	}
	want := fmt.Sprintf("bytes %d-%d/%d", half, size-1, size)
	if resp.StatusCode != http.StatusPartialContent || resp.Header.Get("Content-Range") != want || n != size-half {
		return fmt.Errorf("resume %s: %s, Content-Range %q (want %q), read %d of %d", u, resp.Status,
			resp.Header.Get("Content-Range"), want, n, size-half)
	}
	return nil
}

// spliceFetch sends one GET on a new connection and splices limit bytes
// of the body (all of it when limit < 0) to devNull, then closes the
// connection. It returns the response (its Body unused) and the body
// bytes read.
func spliceFetch(u *url.URL, devNull *os.File, h http.Header, limit int64) (*http.Response, int64, error) {
	c, err := net.Dial("tcp", u.Host)
	if err != nil {
		return nil, 0, err
	}
	defer c.Close()
	req, err := http.NewRequest(http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, 0, err
	}
	maps.Copy(req.Header, h)
	if err := req.Write(c); err != nil {
		return nil, 0, err
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		return nil, 0, err
	}
	if limit < 0 {
		limit = resp.ContentLength
	}
	if limit < 0 {
		return resp, 0, fmt.Errorf("%s without Content-Length", resp.Status)
	}
	// What the head's read took of the body, then the rest, spliced.
	n, _ := br.Discard(int(min(int64(br.Buffered()), limit)))
	m, err := devNull.ReadFrom(io.LimitReader(c, limit-int64(n)))
	return resp, int64(n) + m, err
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
