package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"ironbark/internal/lab"
	ibtftp "ironbark/pxe/tftp"
)

// benchTFTP measures throughput for one client and for many concurrent
// clients fetching the same large file, ironbark against tftpd-hpa, from
// a client namespace behind the lab bridge. The client is Debian's atftp,
// first asking for windowsize (RFC 7440: tftpd-hpa ignores it and sends
// lock-step, ironbark sends windows), then lock-step for both.
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
	sizes := map[string]int64{"big.img": int64(o.tftpMiB) << 20, "par.img": int64(o.tftpParMiB) << 20}
	for name, size := range sizes {
		data := make([]byte, size)
		rand.Read(data)
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			return err
		}
	}
	// Both servers run at once, each on its own address of the bridge, so
	// that their rounds can alternate: on a shared, busy machine load comes
	// and goes, and alternating keeps it from favouring either. Each figure
	// is the median of its rounds.
	ourIP := ln.Addr.Addr()
	hpaIP := ourIP.Next().Next()
	ln.NS.AddAddr(e, ln.Bridge, netip.PrefixFrom(hpaIP, ln.Addr.Bits()))
	fmt.Printf("tftp: %d MiB file to 1 client, %d MiB to each of %d at once, blksize %d, atftp clients in a namespace behind the bridge, median of %d single and %d parallel rounds, servers alternating (ABBA)\n",
		o.tftpMiB, o.tftpParMiB, o.tftpClients, o.blksize, o.tftpRounds, o.tftpParRounds)

	// ironbark runs as its own process in the lab namespace, like
	// in.tftpd, so that neither server shares a Go runtime with anything.
	self, err := os.Executable()
	if err != nil {
		return err
	}
	args := []string{"-serve-tftp", ourIP.String() + ":69", "-serve-tftp-root", dir}
	if o.verbose {
		args = append(args, "-v")
	}
	if o.cpuProfile != "" {
		args = append(args, "-cpuprofile", o.cpuProfile+".tftp")
	}
	ours := ln.NS.Start(e, self, args...)
	defer stopProcess(ours) // before the lab goes: the profile is written on exit
	hpa := ln.NS.Start(e, "in.tftpd", "--foreground", "--listen", "--address", hpaIP.String()+":69", "--secure", dir)

	type server struct {
		name string
		ip   netip.Addr
		proc *lab.Process
	}
	servers := []server{{"ironbark", ourIP, ours}, {"tftpd-hpa", hpaIP, hpa}}
	if o.tftpBaseline != "" {
		// Another build's server (pxebench -serve-tftp of an earlier
		// commit) in the same rounds: an A/B that the load cannot favour.
		ip := hpaIP.Next()
		ln.NS.AddAddr(e, ln.Bridge, netip.PrefixFrom(ip, ln.Addr.Bits()))
		base := ln.NS.Start(e, o.tftpBaseline, "-serve-tftp", ip.String()+":69", "-serve-tftp-root", dir)
		defer stopProcess(base)
		servers = append(servers, server{"baseline", ip, base})
	}
	// Wait until both answer.
	for _, sv := range servers {
		var err error
		for range 50 {
			if err = atftp(ctx, cli, sv.ip, "big.img", o.blksize, 0); err == nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil {
			return fmt.Errorf("%s: %w\n%s", sv.name, err, sv.proc.Output())
		}
	}
	// measure returns the rate and the clients' CPU time (atftp processes
	// are this process's children, reaped by the time it returns).
	measure := func(clients int, file string, window int, ip netip.Addr) (float64, time.Duration, error) {
		clientCPU := childrenCPU()
		var wg sync.WaitGroup
		errs := make(chan error, clients)
		start := time.Now()
		ends := make([]time.Duration, clients)
		for i := range clients {
			wg.Go(func() {
				if err := atftp(ctx, cli, ip, file, o.blksize, window); err != nil {
					errs <- err
				}
				ends[i] = time.Since(start)
			})
		}
		wg.Wait()
		rate := float64(sizes[file]) * float64(clients) / time.Since(start).Seconds()
		if clients > 1 {
			slices.Sort(ends)
			e.Logf("%s: clients done after %v (first) %v (median) %v (last)", ip, ends[0], ends[clients/2], ends[clients-1])
		}
		close(errs)
		return rate, childrenCPU() - clientCPU, <-errs
	}
	mb := func(r float64) float64 { return r / 1e6 }
	for _, window := range []int{o.tftpWindow, 0} {
		mode, short := fmt.Sprintf("windowsize %d", window), "window"
		if window == 0 {
			mode, short = "lock-step", "lockstep"
		}
		for _, run := range []struct {
			clients, rounds int
			file, kind      string
		}{{1, o.tftpRounds, "big.img", "single"}, {o.tftpClients, o.tftpParRounds, "par.img", "parallel"}} {
			if o.tftpCases != "all" && !slices.Contains(strings.Split(o.tftpCases, ","), short+"-"+run.kind) {
				continue
			}
			rates := make([][]float64, len(servers))
			cpu := make([]time.Duration, len(servers))
			clientCPU := make([]time.Duration, len(servers))
			for round := range run.rounds {
				// Which server goes first alternates too (ABBA with two),
				// so that none always runs after another's round.
				order := make([]int, len(servers))
				for k := range order {
					order[k] = k
				}
				if round%2 == 1 {
					slices.Reverse(order)
				}
				for _, i := range order {
					sv := servers[i]
					// in.tftpd's transfers are its children: counted too.
					tc := startTreeCPU(sv.proc.Cmd.Process.Pid)
					r, ccpu, err := measure(run.clients, run.file, window, sv.ip)
					cpu[i] += tc.stop()
					clientCPU[i] += ccpu
					if err != nil {
						return fmt.Errorf("%s, %s: %w\n%s", sv.name, mode, err, sv.proc.Output())
					}
					rates[i] = append(rates[i], r)
				}
			}
			// CPU per block: steadier than throughput on a shared machine.
			blocks := float64(run.rounds*run.clients) * float64(sizes[run.file]) / float64(o.blksize)
			perBlock := func(i int) float64 { return float64(cpu[i].Nanoseconds()) / blocks / 1e3 }
			clientPerBlock := func(i int) float64 { return float64(clientCPU[i].Nanoseconds()) / blocks / 1e3 }
			a, b := median(rates[0]), median(rates[1])
			clients := fmt.Sprintf("%d client%s", run.clients, map[bool]string{true: "s"}[run.clients > 1])
			fmt.Printf("tftp %-10s %-15s ironbark %7.1f MB/s  tftpd-hpa %7.1f MB/s  ratio %s  (rounds: ironbark %s, tftpd-hpa %s; CPU per block %.1f vs %.1f µs)\n",
				clients, mode, mb(a), mb(b), ratio(a, b), list(rates[0], 1e6), list(rates[1], 1e6), perBlock(0), perBlock(1))
			if o.verbose {
				// A server's pace can change its clients' work too (how
				// often they sleep for a block), and both share the cores.
				fmt.Printf("tftp %-10s %-15s atftp CPU per block: with ironbark %.1f µs, with tftpd-hpa %.1f µs",
					clients, mode, clientPerBlock(0), clientPerBlock(1))
				if len(servers) > 2 {
					fmt.Printf(", with baseline %.1f µs", clientPerBlock(2))
				}
				fmt.Println()
			}
			if len(servers) > 2 {
				c := median(rates[2])
				fmt.Printf("tftp %-10s %-15s baseline %7.1f MB/s  tftpd-hpa %7.1f MB/s  ratio %s  (rounds: baseline %s; CPU per block %.1f µs; ironbark/baseline %s)\n",
					clients, mode, mb(c), mb(b), ratio(c, b), list(rates[2], 1e6), perBlock(2), ratio(a, c))
			}
		}
	}
	return nil
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// list prints rates divided by unit, rounded.
func list(rates []float64, unit float64) string {
	var b strings.Builder
	for i, r := range rates {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%.0f", r/unit)
	}
	return b.String()
}

// atftp downloads name from the server at ip with Debian's atftp client
// from inside ns, asking for blksize and, when window > 0, windowsize.
// The file goes to /dev/null; atftp exits non-zero on any failure.
func atftp(ctx context.Context, ns *lab.NetNS, ip netip.Addr, name string, blksize, window int) error {
	args := []string{"--option", fmt.Sprintf("blksize %d", blksize), "--tftp-timeout", "2"}
	if window > 0 {
		args = append(args, "--option", fmt.Sprintf("windowsize %d", window))
	}
	args = append(args, "-g", "-r", name, "-l", "/dev/null", ip.String(), "69")
	out, err := ns.Command(ctx, "atftp", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("atftp %s: %w\n%s", name, err, out)
	}
	return nil
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

// treeCPU follows the CPU time a server and its children use while it
// runs: in.tftpd forks a child per transfer and ignores SIGCHLD, so the
// children's time never reaches its own counters; each child's is
// sampled every few milliseconds until it exits (the last few
// milliseconds of each are missed: a small undercount in its favour).
type treeCPU struct {
	pid  int
	base time.Duration
	done chan struct{}
	res  chan time.Duration
}

func startTreeCPU(pid int) *treeCPU {
	t := &treeCPU{pid: pid, base: procCPU(pid, true), done: make(chan struct{}), res: make(chan time.Duration)}
	go func() {
		seen := map[int]time.Duration{} // child pid: its last sample
		sample := func() {
			b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
			for _, f := range strings.Fields(string(b)) {
				c, err := strconv.Atoi(f)
				if err != nil {
					continue
				}
				if v := procCPU(c, true); v > 0 {
					seen[c] = v // children are the measured transfers: from 0
				}
			}
		}
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			sample()
			select {
			case <-tick.C:
				continue
			case <-t.done:
			}
			break
		}
		total := procCPU(pid, true) - t.base
		for _, v := range seen {
			total += v
		}
		t.res <- total
	}()
	return t
}

func (t *treeCPU) stop() time.Duration { close(t.done); return <-t.res }

// childrenCPU is the CPU time of this process's children that have
// ended and been waited for.
func childrenCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
