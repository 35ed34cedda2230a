package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/insomniacslk/dhcp/iana"

	"ironbark/internal/lab"
	"ironbark/internal/store"
	"ironbark/pxe/dhcp"
	"ironbark/pxe/leases"
)

// benchDHCP measures DORA/s for fresh leases and for the same clients
// coming back, ironbark against Kea (and dnsmasq with -dnsmasq). Each
// server has its own lab bridge (same addresses, same pool) with a load
// generator in a namespace behind it, and all run at once, so that their
// rounds can alternate: on a shared, busy machine load comes and goes,
// and alternating keeps it from favouring any. Each figure is the median
// of its rounds; every round brings new MACs.
func benchDHCP(ctx context.Context, e *env, o options) error {
	pool := dhcp.Pool{Start: netip.MustParseAddr("10.211.128.1"), End: netip.MustParseAddr("10.211.255.254")}
	fmt.Printf("dhcp: %d simulated clients a round, %d exchanges in flight, median of %d rounds, servers alternating, leases persisted (ironbark: SQLite WAL, synchronous NORMAL, and FULL; kea: memfile CSV, flushed per change, not fsynced; dnsmasq: lease file, fsynced)\n",
		o.macs, o.inflight, o.dhcpRounds)

	type server struct {
		name     string
		gen      *lab.NetNS
		genIf    string
		fresh    []float64
		again    []float64
		cpu      time.Duration // the server's CPU time in all rounds
		doras    int
		resent   int64
		naks     int64
		proc     *lab.Process
		rounds   int
		stopping func()
	}
	var servers []*server
	defer func() {
		for _, sv := range servers {
			if sv.stopping != nil {
				sv.stopping()
			}
		}
	}()
	add := func(name string, rounds int, start func(ln *lab.LabNet, dir string) (*lab.Process, error)) error {
		ln := lab.NewLabNet(e, "10.211.0.1/16")
		gen := lab.NewNetNS(e)
		sv := &server{name: name, gen: gen, genIf: ln.NS.Link(e, ln.Bridge, gen), rounds: rounds}
		dir, err := os.MkdirTemp("", "pxebench-"+name)
		if err != nil {
			return err
		}
		e.Cleanup(func() { os.RemoveAll(dir) })
		if sv.proc, err = start(ln, dir); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		p := sv.proc
		sv.stopping = func() { stopProcess(p); e.Logf("%s output:\n%s", name, p.Output()) }
		// Wait until it answers one client (not counted).
		if err := waitAnswer(ctx, gen, sv.genIf, byte(len(servers))); err != nil {
			return fmt.Errorf("%s: %w\n%s", name, err, p.Output())
		}
		servers = append(servers, sv)
		return nil
	}
	if err := add("ironbark", o.dhcpRounds, func(ln *lab.LabNet, dir string) (*lab.Process, error) {
		return startIronbark(e, ln, pool, dir, "", false, o), nil
	}); err != nil {
		return err
	}
	if err := add("ironbark-fsync", o.dhcpRounds, func(ln *lab.LabNet, dir string) (*lab.Process, error) {
		return startIronbark(e, ln, pool, dir, "", true, o), nil
	}); err != nil {
		return err
	}
	if err := add("kea", o.dhcpRounds, func(ln *lab.LabNet, dir string) (*lab.Process, error) {
		return startKea(e, ln, pool, dir), nil
	}); err != nil {
		return err
	}
	if o.dhcpBaseline != "" {
		if err := add("baseline", o.dhcpRounds, func(ln *lab.LabNet, dir string) (*lab.Process, error) {
			return startIronbark(e, ln, pool, dir, o.dhcpBaseline, false, o), nil
		}); err != nil {
			return err
		}
	}
	if o.dnsmasq {
		// dnsmasq is 10-50 times slower: one round.
		if err := add("dnsmasq", 1, func(ln *lab.LabNet, dir string) (*lab.Process, error) {
			return ln.NS.Start(e, "dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--port=0", "--user=root",
				"--interface="+ln.Bridge, "--bind-interfaces",
				fmt.Sprintf("--dhcp-range=%s,%s,255.255.0.0,1h", pool.Start, pool.End),
				"--dhcp-leasefile="+filepath.Join(dir, "leases"), "--dhcp-lease-max=1000000",
				"--dhcp-authoritative", "--no-ping", "--quiet-dhcp", "--dhcp-boot=undionly.kpxe",
				"--pid-file="+filepath.Join(dir, "pid")), nil
		}); err != nil {
			return err
		}
	}
	for round := range o.dhcpRounds {
		macs := make([]net.HardwareAddr, o.macs)
		for i := range macs {
			// Spread like NIC serials of mixed batches, not 0,1,2...:
			// dnsmasq picks a start address by hashing the MAC, and
			// consecutive MACs crowd onto the same addresses and NAK each
			// other.
			v := uint32(i) * 2654435761 & 0xffffff
			macs[i] = net.HardwareAddr{0x52, 0x54, byte(0x10 + round), byte(v >> 16), byte(v >> 8), byte(v)}
		}
		for _, sv := range servers {
			if round >= sv.rounds {
				continue
			}
			cpu0 := cpuTime(sv.proc.Cmd.Process.Pid)
			fresh, err := runDORA(ctx, sv.gen, sv.genIf, macs, o.inflight)
			if err != nil {
				return fmt.Errorf("%s, new leases: %w\n%s", sv.name, err, sv.proc.Output())
			}
			again, err := runDORA(ctx, sv.gen, sv.genIf, macs, o.inflight)
			if err != nil {
				return fmt.Errorf("%s, returning clients: %w\n%s", sv.name, err, sv.proc.Output())
			}
			sv.cpu += cpuTime(sv.proc.Cmd.Process.Pid) - cpu0
			sv.doras += fresh.n + again.n
			sv.fresh, sv.again = append(sv.fresh, fresh.rate()), append(sv.again, again.rate())
			sv.resent += fresh.retrans + again.retrans
			sv.naks += fresh.naks + again.naks
		}
	}
	ref := servers[2] // kea
	for _, kind := range []string{"new leases", "returning clients"} {
		pick := func(sv *server) []float64 {
			if kind == "new leases" {
				return sv.fresh
			}
			return sv.again
		}
		k := median(pick(ref))
		for _, sv := range servers {
			if sv == ref {
				continue
			}
			v := median(pick(sv))
			fmt.Printf("dhcp %-17s %-15s %7.0f DORA/s  kea %7.0f DORA/s  ratio %s  (rounds: %s vs %s; %d resent, %d NAK)\n",
				kind, sv.name, v, k, ratio(v, k), list(pick(sv), 1), list(pick(ref), 1), sv.resent, sv.naks)
		}
	}
	for _, sv := range servers {
		fmt.Printf("dhcp CPU per DORA   %-15s %5.1f µs\n", sv.name, float64(sv.cpu.Microseconds())/float64(max(sv.doras, 1)))
	}
	return nil
}

// cpuTime is the CPU time (user and system) a process has used so far,
// 0 if it cannot be read.
func cpuTime(pid int) time.Duration { return procCPU(pid, false) }

// procCPU is cpuTime, plus with children the CPU time of its children
// that have exited and were waited for (in.tftpd forks one per transfer).
func procCPU(pid int, children bool) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The fields after the command name (which may hold spaces) start
	// after the last ')': state is field 3, utime 14, stime 15, cutime
	// 16, cstime 17.
	i := strings.LastIndexByte(string(b), ')')
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 15 {
		return 0
	}
	var t int64
	n := 2
	if children {
		n = 4
	}
	for _, v := range f[11 : 11+n] {
		x, _ := strconv.ParseInt(v, 10, 64)
		t += x
	}
	return time.Duration(t) * time.Second / 100 // USER_HZ is 100 on Linux
}

// startKea runs kea-dhcp4 on the lab bridge: the same pool, lease time
// and boot file as the others, memfile lease database persisted to a CSV
// file in dir (Debian's defaults otherwise: raw sockets, no lease file
// cleanup during the run).
func startKea(e *env, ln *lab.LabNet, pool dhcp.Pool, dir string) *lab.Process {
	conf := fmt.Sprintf(`{"Dhcp4": {
  "interfaces-config": {"interfaces": [%q]},
  "lease-database": {"type": "memfile", "persist": true, "name": %q, "lfc-interval": 0},
  "valid-lifetime": 3600,
  "authoritative": true,
  "boot-file-name": "undionly.kpxe",
  "subnet4": [{"id": 1, "subnet": %q, "pools": [{"pool": "%s - %s"}]}],
  "loggers": [{"name": "kea-dhcp4", "severity": "WARN", "output_options": [{"output": "stderr"}]}]
}}`, ln.Bridge, filepath.Join(dir, "leases4.csv"), ln.Addr.Masked().String(), pool.Start, pool.End)
	path := filepath.Join(dir, "kea-dhcp4.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		e.Fatalf("kea config: %v", err)
	}
	// Kea keeps its pid and lock files where these say.
	return ln.NS.Start(e, "env", "KEA_PIDFILE_DIR="+dir, "KEA_LOCKFILE_DIR="+dir, "kea-dhcp4", "-c", path)
}

// startIronbark runs ironbark's DHCP server as its own process in the lab
// namespace (like Kea, so it shares no Go runtime with the load
// generator), with a fresh SQLite lease database in dir and a backend
// that admits every client (like a dhcp-range). fsync switches SQLite to
// synchronous=FULL, which fsyncs the WAL at every commit; the default
// (NORMAL) survives a process crash but may lose the last commits on
// power loss, like Kea's memfile, which writes each change to its file
// without fsync.
// bin is the pxebench binary whose server runs ("": this one).
func startIronbark(e *env, ln *lab.LabNet, pool dhcp.Pool, dir, bin string, fsync bool, o options) *lab.Process {
	self, err := os.Executable()
	if err != nil {
		e.Fatalf("%v", err)
	}
	if bin != "" {
		self = bin
	}
	args := []string{"-serve-dhcp", ln.Bridge, "-serve-dhcp-addr", ln.Addr.String(),
		"-serve-dhcp-pool", pool.Start.String() + "-" + pool.End.String(), "-serve-dhcp-db", filepath.Join(dir, "ironbark.db")}
	if fsync {
		args = append(args, "-serve-dhcp-fsync")
	}
	if o.verbose {
		args = append(args, "-v")
	}
	if o.cpuProfile != "" {
		prof := o.cpuProfile + ".dhcp"
		if fsync {
			prof += "-fsync"
		}
		args = append(args, "-cpuprofile", prof)
	}
	return ln.NS.Start(e, self, args...)
}

// stopProcess stops a server started in the lab and waits until it is
// gone (the lab reaps it, so its pid disappears once it has exited).
func stopProcess(p *lab.Process) {
	_ = syscall.Kill(-p.Cmd.Process.Pid, syscall.SIGTERM)
	for range 200 {
		if syscall.Kill(p.Cmd.Process.Pid, 0) != nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// serveDHCP is the benchmark's ironbark DHCP server process (pxebench
// -serve-dhcp IFACE ...), stopped by SIGINT or SIGTERM.
func serveDHCP(ctx context.Context, iface, addr, poolRange, dbPath string, fsync, verbose bool) error {
	prefix, err := netip.ParsePrefix(addr)
	if err != nil {
		return err
	}
	first, last, ok := strings.Cut(poolRange, "-")
	if !ok {
		return fmt.Errorf("pool %q: want FIRST-LAST", poolRange)
	}
	var pool dhcp.Pool
	if pool.Start, err = netip.ParseAddr(first); err != nil {
		return err
	}
	if pool.End, err = netip.ParseAddr(last); err != nil {
		return err
	}
	db, err := store.Open(ctx, dbPath)
	if err != nil {
		return err
	}
	defer db.Close()
	ls, err := leases.New(ctx, db, leases.Config{Pool: pool, SyncCommits: fsync})
	if err != nil {
		return err
	}
	defer ls.Close()
	level := slog.LevelWarn
	if verbose {
		level = slog.LevelInfo
	}
	allow := dhcp.BackendFunc(func(context.Context, dhcp.ClientInfo) (*dhcp.Binding, error) { return &dhcp.Binding{}, nil })
	srv, err := dhcp.New(dhcp.Config{Interface: iface, ServerIP: prefix.Addr(), Subnet: prefix,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))}, allow, ls)
	if err != nil {
		return err
	}
	return srv.Serve(ctx)
}

// waitAnswer waits until a server answers one DORA (not counted) from
// a MAC of its own (tag).
func waitAnswer(ctx context.Context, gen *lab.NetNS, genIf string, tag byte) error {
	var err error
	for range 50 {
		if _, err = runDORA(ctx, gen, genIf, []net.HardwareAddr{{0x52, 0x54, 0x02, 0, 0, tag}}, 1); err == nil {
			return nil
		}
	}
	return fmt.Errorf("did not answer: %w", err)
}

type doraResult struct {
	n             int
	dur           time.Duration
	retrans, naks int64
}

type errNAK struct{ mac, msg string }

func (e errNAK) Error() string { return "NAK for " + e.mac + ": " + e.msg }

func (r doraResult) rate() float64 { return float64(r.n) / r.dur.Seconds() }

// runDORA runs one DISCOVER/OFFER/REQUEST/ACK exchange per MAC, inflight
// at a time, over a raw socket in ns on iface (like PXE firmware: from
// 0.0.0.0, broadcast flag set, PXE vendor class and architecture).
func runDORA(ctx context.Context, ns *lab.NetNS, iface string, macs []net.HardwareAddr, inflight int) (doraResult, error) {
	var conn net.PacketConn
	if err := ns.Do(func() (err error) { conn, err = nclient4.NewRawUDPConn(iface, dhcpv4.ClientPort); return err }); err != nil {
		return doraResult{}, fmt.Errorf("load generator socket: %w", err)
	}
	defer conn.Close()

	var mu sync.Mutex
	waiting := map[dhcpv4.TransactionID]chan *dhcpv4.DHCPv4{}
	go func() {
		buf := make([]byte, 1500)
		for {
			n, _, err := conn.ReadFrom(buf)
			if err != nil {
				return
			}
			m, err := dhcpv4.FromBytes(buf[:n])
			if err != nil || m.OpCode != dhcpv4.OpcodeBootReply {
				continue
			}
			mu.Lock()
			ch := waiting[m.TransactionID]
			mu.Unlock()
			if ch != nil {
				select {
				case ch <- m:
				default:
				}
			}
		}
	}()
	bcast := &net.UDPAddr{IP: net.IPv4bcast, Port: dhcpv4.ServerPort}
	var retrans atomic.Int64
	var xidSeq atomic.Uint32
	// exchange sends p and waits for a reply of type want, retransmitting.
	exchange := func(p *dhcpv4.DHCPv4, want dhcpv4.MessageType) (*dhcpv4.DHCPv4, error) {
		ch := make(chan *dhcpv4.DHCPv4, 4)
		mu.Lock()
		waiting[p.TransactionID] = ch
		mu.Unlock()
		defer func() { mu.Lock(); delete(waiting, p.TransactionID); mu.Unlock() }()
		b := p.ToBytes()
		for try := 0; try < 6; try++ {
			if try > 0 {
				retrans.Add(1)
			}
			if _, err := conn.WriteTo(b, bcast); err != nil {
				return nil, err
			}
			// RFC 2131 4.1: wait about 4 s before the first retransmission,
			// so a slow server is not also buried in duplicates.
			timeout := time.NewTimer(4 * time.Second)
			for {
				select {
				case m := <-ch:
					if m.MessageType() == want {
						timeout.Stop()
						return m, nil
					}
					if m.MessageType() == dhcpv4.MessageTypeNak {
						timeout.Stop()
						return nil, errNAK{p.ClientHWAddr.String(), m.Message()}
					}
					continue
				case <-timeout.C:
				case <-ctx.Done():
					return nil, ctx.Err()
				}
				break
			}
		}
		return nil, fmt.Errorf("no %s for %s", want, p.ClientHWAddr)
	}
	pxe := []dhcpv4.Modifier{
		dhcpv4.WithBroadcast(true),
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00000:UNDI:002001")),
		dhcpv4.WithOption(dhcpv4.OptClientArch(iana.INTEL_X86PC)),
	}
	// one runs DORA for a MAC; a NAK (dnsmasq NAKs a REQUEST when two
	// clients were offered the same address) restarts from DISCOVER, as a
	// real client does.
	var naks atomic.Int64
	var dora func(mac net.HardwareAddr) error
	one := func(mac net.HardwareAddr) error {
		var err error
		for try := 0; try < 50; try++ {
			if err = dora(mac); !errors.As(err, new(errNAK)) {
				return err
			}
			naks.Add(1)
		}
		return err
	}
	dora = func(mac net.HardwareAddr) error {
		var xid dhcpv4.TransactionID
		binary.BigEndian.PutUint32(xid[:], xidSeq.Add(1)^uint32(time.Now().UnixNano()))
		d, err := dhcpv4.NewDiscovery(mac, append(pxe, dhcpv4.WithTransactionID(xid))...)
		if err != nil {
			return err
		}
		offer, err := exchange(d, dhcpv4.MessageTypeOffer)
		if err != nil {
			return err
		}
		r, err := dhcpv4.NewRequestFromOffer(offer, pxe...)
		if err != nil {
			return err
		}
		_, err = exchange(r, dhcpv4.MessageTypeAck)
		return err
	}
	next := make(chan net.HardwareAddr)
	errc := make(chan error, inflight)
	var wg sync.WaitGroup
	start := time.Now()
	for range inflight {
		wg.Go(func() {
			for mac := range next {
				if err := one(mac); err != nil {
					errc <- err
					return
				}
			}
		})
	}
	var firstErr error
feed:
	for _, m := range macs {
		select {
		case next <- m:
		case firstErr = <-errc:
			break feed
		}
	}
	close(next)
	wg.Wait()
	dur := time.Since(start)
	if firstErr == nil {
		select {
		case firstErr = <-errc:
		default:
		}
	}
	if firstErr != nil {
		if errors.Is(firstErr, context.Canceled) {
			return doraResult{}, firstErr
		}
		return doraResult{}, fmt.Errorf("DORA: %w", firstErr)
	}
	return doraResult{n: len(macs), dur: dur, retrans: retrans.Load(), naks: naks.Load()}, nil
}
