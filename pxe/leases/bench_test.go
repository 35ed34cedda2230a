package leases

import (
	"context"
	"net"
	"net/netip"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"ironbark/internal/store"
	"ironbark/pxe/dhcp"
)

// BenchmarkNewLeases: 64 clients at once (the DHCP server's workers) each
// take a new lease (Offer, then Ack), on SQLite in a temp dir: the group
// commit under load. -benchtime sets how many leases in all.
func BenchmarkNewLeases(b *testing.B) {
	// Cancellable, as the server's is (the driver watches it).
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	db, err := store.Open(ctx, filepath.Join(b.TempDir(), "ironbark.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	pool := dhcp.Pool{Start: netip.MustParseAddr("10.0.0.1"), End: dhcp.Pool{Start: netip.MustParseAddr("10.0.0.1")}.Nth(1 << 22)}
	ls, err := New(ctx, db, Config{Pool: pool})
	if err != nil {
		b.Fatal(err)
	}
	var next atomic.Int64
	const workers = 64
	b.ResetTimer()
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				m := net.HardwareAddr{0x52, 0x54, byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i)}
				o, err := ls.Offer(ctx, dhcp.OfferRequest{MAC: m})
				if err != nil {
					b.Error(err)
					return
				}
				if _, err := ls.Ack(ctx, dhcp.AckRequest{MAC: m, IP: o.IP, LeaseTime: time.Hour}); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}
