package blobstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"testing"
)

func BenchmarkPut(b *testing.B) {
	s, err := Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	data := bytes.Repeat([]byte("blob"), 4<<20) // 16 MiB
	b.SetBytes(int64(len(data)))
	for i := 0; i < b.N; i++ {
		binary.LittleEndian.PutUint64(data, uint64(i)) // a new blob each time
		d, _, err := s.Put(context.Background(), bytes.NewReader(data))
		if err != nil {
			b.Fatal(err)
		}
		s.Delete(d)
	}
}
