package initramfs

import (
	"bytes"
	"io"
	"testing"
)

func benchBuild(b *testing.B, comp Compression) {
	data := bytes.Repeat([]byte("initramfs content "), 1<<16) // ~1.1 MiB per file
	var files []File
	for i := 0; i < 16; i++ {
		files = append(files, File{Path: "lib/f" + string(rune('a'+i)), Mode: 0o644, Data: data})
	}
	b.SetBytes(int64(len(data) * len(files)))
	for i := 0; i < b.N; i++ {
		if _, err := Build(io.Discard, Spec{Files: files, Compression: comp}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkBuildGzip(b *testing.B) { benchBuild(b, Gzip) }
func BenchmarkBuildZstd(b *testing.B) { benchBuild(b, Zstd) }
func BenchmarkBuildNone(b *testing.B) { benchBuild(b, None) }
