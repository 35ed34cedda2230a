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
	"sync"
	"sync/atomic"
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
// coming back, against ironbark's server and then dnsmasq, on the same
// bridge from a load generator in a second namespace.
func benchDHCP(ctx context.Context, e *env, o options) error {
	ln := lab.NewLabNet(e, "10.211.0.1/16")
	gen := lab.NewNetNS(e)
	genIf := ln.NS.Link(e, ln.Bridge, gen)
	pool := dhcp.Pool{Start: netip.MustParseAddr("10.211.128.1"), End: netip.MustParseAddr("10.211.255.254")}
	macs := make([]net.HardwareAddr, o.macs)
	for i := range macs {
		// Spread like NIC serials of mixed batches, not 0,1,2...: dnsmasq
		// picks a start address by hashing the MAC, and consecutive MACs
		// crowd onto the same addresses and NAK each other.
		v := uint32(i) * 2654435761 & 0xffffff
		macs[i] = net.HardwareAddr{0x52, 0x54, 0x01, byte(v >> 16), byte(v >> 8), byte(v)}
	}
	fmt.Printf("dhcp: %d simulated clients, %d exchanges in flight, leases persisted (ironbark: SQLite WAL, synchronous NORMAL and FULL; dnsmasq: lease file, fsync per change)\n",
		o.macs, o.inflight)

	type result struct{ fresh, again doraResult }
	var ours, oursSync, theirs result
	var err error
	run := func(fsync bool) (r result, err error) {
		stop, err := startIronbark(ctx, ln, pool, fsync, o.verbose)
		if err != nil {
			return r, err
		}
		defer stop()
		if r.fresh, err = runDORA(ctx, gen, genIf, macs, o.inflight); err != nil {
			return r, err
		}
		r.again, err = runDORA(ctx, gen, genIf, macs, o.inflight)
		return r, err
	}
	if ours, err = run(false); err != nil {
		return fmt.Errorf("ironbark: %w", err)
	}
	if oursSync, err = run(true); err != nil {
		return fmt.Errorf("ironbark (synchronous=FULL): %w", err)
	}

	// dnsmasq on the same bridge, fresh lease file.
	func() {
		dir, _ := os.MkdirTemp("", "pxebench-dnsmasq")
		defer os.RemoveAll(dir)
		p := ln.NS.Start(e, "dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--port=0", "--user=root",
			"--interface="+ln.Bridge, "--bind-interfaces",
			fmt.Sprintf("--dhcp-range=%s,%s,255.255.0.0,1h", pool.Start, pool.End),
			"--dhcp-leasefile="+filepath.Join(dir, "leases"), "--dhcp-lease-max=1000000",
			"--dhcp-authoritative", "--no-ping", "--quiet-dhcp", "--dhcp-boot=undionly.kpxe",
			"--pid-file="+filepath.Join(dir, "pid"))
		defer func() { _ = p.Cmd.Process.Signal(os.Interrupt) }()
		// Wait until it answers one client (not counted).
		var werr error
		for range 50 {
			if _, werr = runDORA(ctx, gen, genIf, []net.HardwareAddr{{0x52, 0x54, 0x02, 0, 0, 1}}, 1); werr == nil {
				break
			}
		}
		if werr != nil {
			err = fmt.Errorf("dnsmasq did not answer: %v\n%s", werr, p.Output())
			return
		}
		if theirs.fresh, err = runDORA(ctx, gen, genIf, macs, o.inflight); err != nil {
			return
		}
		theirs.again, err = runDORA(ctx, gen, genIf, macs, o.inflight)
		if fi, serr := os.Stat(filepath.Join(dir, "leases")); serr == nil {
			e.Logf("dnsmasq lease file: %d bytes", fi.Size())
		}
	}()
	if err != nil {
		return fmt.Errorf("dnsmasq: %w", err)
	}
	for _, row := range []struct {
		name string
		a, b doraResult
	}{
		{"new leases", ours.fresh, theirs.fresh},
		{"returning clients", ours.again, theirs.again},
		{"new, fsync/commit", oursSync.fresh, theirs.fresh},
		{"returning, fsync", oursSync.again, theirs.again},
	} {
		fmt.Printf("dhcp %-18s ironbark %7.0f DORA/s (%d resent, %d NAK)  dnsmasq %7.0f DORA/s (%d resent, %d NAK)  ratio %s\n",
			row.name, row.a.rate(), row.a.retrans, row.a.naks, row.b.rate(), row.b.retrans, row.b.naks, ratio(row.a.rate(), row.b.rate()))
	}
	return nil
}

// startIronbark runs ironbark's DHCP server on the lab bridge with a fresh
// SQLite lease database and a backend that admits every client (like
// dnsmasq's dhcp-range). fsync switches SQLite to synchronous=FULL, which
// fsyncs the WAL at every commit as dnsmasq fsyncs its lease file after
// every change; the default (NORMAL) survives a process crash but may
// lose the last commits on power loss.
func startIronbark(ctx context.Context, ln *lab.LabNet, pool dhcp.Pool, fsync, verbose bool) (stop func(), err error) {
	sctx, cancel := context.WithCancel(ctx)
	dir, err := os.MkdirTemp("", "pxebench-dhcp")
	if err != nil {
		cancel()
		return nil, err
	}
	var closers []func()
	stop = func() {
		cancel()
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
		os.RemoveAll(dir)
	}
	defer func() {
		if err != nil {
			stop()
		}
	}()
	db, err := store.Open(sctx, filepath.Join(dir, "ironbark.db"))
	if err != nil {
		return nil, err
	}
	closers = append(closers, func() { db.Close() })
	if fsync {
		// PRAGMA synchronous is per connection: use one.
		db.SQL().SetMaxOpenConns(1)
		if _, err := db.SQL().ExecContext(sctx, "PRAGMA synchronous=FULL"); err != nil {
			return nil, err
		}
	}
	ls, err := leases.New(sctx, db, leases.Config{Pool: pool})
	if err != nil {
		return nil, err
	}
	level := slog.LevelWarn
	if verbose {
		level = slog.LevelInfo
	}
	allow := dhcp.BackendFunc(func(context.Context, dhcp.ClientInfo) (*dhcp.Binding, error) { return &dhcp.Binding{}, nil })
	srv, err := dhcp.New(dhcp.Config{Interface: ln.Bridge, ServerIP: ln.Addr.Addr(), Subnet: ln.Addr,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))}, allow, ls)
	if err != nil {
		return nil, err
	}
	var conn net.PacketConn
	if err := ln.NS.Do(func() (err error) { conn, err = dhcp.Listen(ln.Bridge, 0); return err }); err != nil {
		return nil, err
	}
	done := make(chan error, 1)
	go func() { done <- srv.ServeConn(sctx, conn) }()
	closers = append(closers, func() { cancel(); <-done })
	return stop, nil
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
