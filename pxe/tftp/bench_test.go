package tftp

import (
	"crypto/rand"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/pin/tftp/v3"
)

// BenchmarkTransfer: 16 MiB from a file over loopback, blksize 1468 (an
// Ethernet-sized block, as PXE clients ask), one client and 8 at once.
func BenchmarkTransfer(b *testing.B) {
	dir := b.TempDir()
	data := make([]byte, 16<<20)
	rand.Read(data)
	if err := os.WriteFile(filepath.Join(dir, "f"), data, 0o644); err != nil {
		b.Fatal(err)
	}
	s, err := New(Config{Root: dir, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	addr := serve(b, s)
	fetch := func() {
		c, err := tftp.NewClient(addr)
		if err != nil {
			b.Error(err)
			return
		}
		c.SetBlockSize(1468)
		wt, err := c.Receive("f", "octet")
		if err != nil {
			b.Error(err)
			return
		}
		if n, err := wt.WriteTo(io.Discard); err != nil || n != int64(len(data)) {
			b.Errorf("%d bytes, %v", n, err)
		}
	}
	for _, clients := range []int{1, 8} {
		b.Run(map[int]string{1: "1client", 8: "8clients"}[clients], func(b *testing.B) {
			b.SetBytes(int64(len(data) * clients))
			for b.Loop() {
				var wg sync.WaitGroup
				for range clients {
					wg.Go(fetch)
				}
				wg.Wait()
			}
		})
	}
}
