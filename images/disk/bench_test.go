package disk

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkExt4 writes a 500-file, 64 MiB tree into an ext4 image.
func BenchmarkExt4(b *testing.B) {
	root := b.TempDir()
	data := make([]byte, 128<<10)
	for i := range data {
		data[i] = byte(i * 7)
	}
	for i := 0; i < 500; i++ {
		dir := filepath.Join(root, fmt.Sprintf("d%d", i%10))
		os.MkdirAll(dir, 0o755)
		os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%d", i)), data, 0o644)
	}
	out := filepath.Join(b.TempDir(), "fs.img")
	b.SetBytes(500 * int64(len(data)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := BuildFilesystem(context.Background(), out, FSExt4, DirSource(root), 128<<20, FSOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}
