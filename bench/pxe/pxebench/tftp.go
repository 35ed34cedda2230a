package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/pin/tftp/v3"

	"ironbark/internal/lab"
	ibtftp "ironbark/pxe/tftp"
)

// benchTFTP measures throughput for one client and for many concurrent
// clients fetching the same large file, ironbark then tftpd-hpa, from a
// client namespace behind the lab bridge.
func benchTFTP(ctx context.Context, e *env, o options) error {
	ln := lab.NewLabNet(e, "10.212.0.1/24")
	cli := lab.NewNetNS(e)
	cliIf := ln.NS.Link(e, ln.Bridge, cli)
	cli.AddAddr(e, cliIf, netip.MustParsePrefix("10.212.0.2/24"))
	dir, err := os.MkdirTemp("", "pxebench-tftp")
	if err != nil {
		return err
	}
	e.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		return err
	}
	size := int64(o.tftpMiB) << 20
	data := make([]byte, size)
	rand.Read(data)
	if err := os.WriteFile(filepath.Join(dir, "big.img"), data, 0o644); err != nil {
		return err
	}
	// Both servers run at once, each on its own address of the bridge, so
	// that their rounds can alternate: on a shared, busy machine load comes
	// and goes, and alternating keeps it from favouring either. Each figure
	// is the best of its rounds.
	ourAddr := ln.Addr.Addr().String() + ":69"
	hpaIP := ln.Addr.Addr().Next().Next()
	ln.NS.AddAddr(e, ln.Bridge, netip.PrefixFrom(hpaIP, ln.Addr.Bits()))
	hpaAddr := hpaIP.String() + ":69"
	fmt.Printf("tftp: %d MiB file, blksize %d, clients in a namespace behind the bridge, best of %d single and %d parallel rounds, alternating\n",
		o.tftpMiB, o.blksize, o.tftpRounds, o.tftpParRounds)

	// ironbark runs as its own process in the lab namespace, like
	// in.tftpd, so that neither server shares a Go runtime with the
	// clients.
	self, err := os.Executable()
	if err != nil {
		return err
	}
	args := []string{"-serve-tftp", ourAddr, "-serve-tftp-root", dir}
	if o.verbose {
		args = append(args, "-v")
	}
	ours := ln.NS.Start(e, self, args...)
	hpa := ln.NS.Start(e, "in.tftpd", "--foreground", "--listen", "--address", hpaAddr, "--secure", dir)

	single := func(addr string) (float64, error) {
		start := time.Now()
		if err := fetch(cli, addr, "big.img", o.blksize, size); err != nil {
			return 0, err
		}
		return float64(size) / time.Since(start).Seconds(), nil
	}
	parallel := func(addr string) (float64, error) {
		var wg sync.WaitGroup
		errs := make(chan error, o.tftpClients)
		start := time.Now()
		for range o.tftpClients {
			wg.Go(func() {
				if err := fetch(cli, addr, "big.img", o.blksize, size); err != nil {
					errs <- err
				}
			})
		}
		wg.Wait()
		rate := float64(size) * float64(o.tftpClients) / time.Since(start).Seconds()
		close(errs)
		return rate, <-errs
	}
	type server struct {
		name, addr       string
		proc             *lab.Process
		single, parallel float64
	}
	servers := []*server{{name: "ironbark", addr: ourAddr, proc: ours}, {name: "tftpd-hpa", addr: hpaAddr, proc: hpa}}
	round := func(measure func(string) (float64, error), best func(*server) *float64) error {
		for _, sv := range servers {
			r, err := measure(sv.addr)
			if err != nil {
				return fmt.Errorf("%s: %w\n%s", sv.name, err, sv.proc.Output())
			}
			*best(sv) = max(*best(sv), r)
		}
		return nil
	}
	for range o.tftpRounds {
		if err := round(single, func(sv *server) *float64 { return &sv.single }); err != nil {
			return err
		}
	}
	for range o.tftpParRounds {
		if err := round(parallel, func(sv *server) *float64 { return &sv.parallel }); err != nil {
			return err
		}
	}
	a, b := servers[0], servers[1]
	mb := func(r float64) float64 { return r / 1e6 }
	fmt.Printf("tftp %-18s ironbark %7.1f MB/s  tftpd-hpa %7.1f MB/s  ratio %s\n", "1 client", mb(a.single), mb(b.single), ratio(a.single, b.single))
	fmt.Printf("tftp %-18s ironbark %7.1f MB/s  tftpd-hpa %7.1f MB/s  ratio %s\n", fmt.Sprintf("%d clients", o.tftpClients), mb(a.parallel), mb(b.parallel), ratio(a.parallel, b.parallel))
	return nil
}

// fetch downloads name with the pin/tftp client from inside ns and checks
// the size. It retries the first request while the server starts.
func fetch(ns *lab.NetNS, addr, name string, blksize int, want int64) error {
	return ns.Do(func() error {
		var err error
		for try := 0; try < 20; try++ {
			if try > 0 {
				time.Sleep(100 * time.Millisecond)
			}
			var c *tftp.Client
			if c, err = tftp.NewClient(addr); err != nil {
				return err
			}
			c.SetBlockSize(blksize)
			c.SetTimeout(2 * time.Second)
			var wt io.WriterTo
			if wt, err = c.Receive(name, "octet"); err != nil {
				continue
			}
			var n int64
			n, err = wt.WriteTo(io.Discard)
			if err == nil && n != want {
				err = fmt.Errorf("got %d bytes, want %d", n, want)
			}
			return err
		}
		return err
	})
}

// serveTFTP is the benchmark's ironbark TFTP server process (pxebench
// -serve-tftp ADDR -serve-tftp-root DIR), stopped by SIGINT or SIGTERM.
func serveTFTP(ctx context.Context, addr, root string, verbose bool) error {
	level := slog.LevelWarn
	if verbose {
		level = slog.LevelInfo
	}
	srv, err := ibtftp.New(ibtftp.Config{Root: root, Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))})
	if err != nil {
		return err
	}
	defer srv.Close()
	return srv.ListenAndServe(ctx, addr)
}
