package iso

import (
	"encoding/binary"
	"fmt"
	"os"
	"time"
)

// stabilize makes the ISO's bytes independent of when it was built.
// go-diskfs stamps the volume descriptor and the boot catalog with
// time.Now, and its Rock Ridge TF entries carry the staging files'
// access and change times. This rewrites the primary volume descriptor's
// creation and modification dates and the catalog's record to t, and every
// TF timestamp to its record's recording (modification) time.
func stabilize(f *os.File, catLBA uint32, t time.Time) error {
	t = t.UTC()
	pvd := make([]byte, 2048)
	if _, err := f.ReadAt(pvd, 16*2048); err != nil {
		return fmt.Errorf("iso: stabilize: %w", err)
	}
	if pvd[0] != 1 || string(pvd[1:6]) != "CD001" {
		return fmt.Errorf("iso: stabilize: no primary volume descriptor")
	}
	stamp := []byte(t.Format("20060102150405") + "00\x00")
	copy(pvd[813:], stamp)                  // creation
	copy(pvd[830:], stamp)                  // modification
	copy(pvd[847:], "0000000000000000\x00") // expiration: none
	copy(pvd[864:], stamp)                  // effective
	if _, err := f.WriteAt(pvd, 16*2048); err != nil {
		return fmt.Errorf("iso: stabilize: %w", err)
	}
	fixed := []byte{byte(t.Year() - 1900), byte(t.Month()), byte(t.Day()), byte(t.Hour()), byte(t.Minute()), byte(t.Second()), 0}
	root := pvd[156 : 156+34]
	seen := map[uint32]bool{}
	var walk func(lba, size uint32) error
	walk = func(lba, size uint32) error {
		if seen[lba] {
			return nil
		}
		seen[lba] = true
		buf := make([]byte, (size+2047)/2048*2048)
		if _, err := f.ReadAt(buf, int64(lba)*2048); err != nil {
			return fmt.Errorf("iso: stabilize: %w", err)
		}
		var subdirs [][2]uint32
		for off := 0; off < len(buf); {
			n := int(buf[off])
			if n == 0 {
				off = (off/2048 + 1) * 2048 // records do not cross sectors
				continue
			}
			if n < 34 || off+n > len(buf) {
				return fmt.Errorf("iso: stabilize: bad directory record at %d", int64(lba)*2048+int64(off))
			}
			rec := buf[off : off+n]
			ext := binary.LittleEndian.Uint32(rec[2:])
			if ext == catLBA {
				copy(rec[18:25], fixed)
			}
			nameLen := int(rec[32])
			sua := 33 + nameLen
			if sua%2 == 1 {
				sua++
			}
			fixTF(rec, sua, rec[18:25])
			if rec[25]&2 != 0 && !(nameLen == 1 && (rec[33] == 0 || rec[33] == 1)) {
				subdirs = append(subdirs, [2]uint32{ext, binary.LittleEndian.Uint32(rec[10:])})
			}
			off += n
		}
		if _, err := f.WriteAt(buf, int64(lba)*2048); err != nil {
			return fmt.Errorf("iso: stabilize: %w", err)
		}
		for _, d := range subdirs {
			if err := walk(d[0], d[1]); err != nil {
				return err
			}
		}
		return nil
	}
	return walk(binary.LittleEndian.Uint32(root[2:]), binary.LittleEndian.Uint32(root[10:]))
}

// fixTF sets every timestamp of a Rock Ridge TF entry in the system use
// area of rec (starting at off) to the 7-byte time ts.
func fixTF(rec []byte, off int, ts []byte) {
	for off+4 <= len(rec) {
		l := int(rec[off+2])
		if l < 4 || off+l > len(rec) {
			return
		}
		if rec[off] == 'T' && rec[off+1] == 'F' && l >= 5 {
			flags := rec[off+4]
			size := 7
			if flags&0x80 != 0 {
				size = 17
			}
			for p := off + 5; p+size <= off+l; p += size {
				if size == 7 {
					copy(rec[p:p+7], ts)
				}
			}
		}
		off += l
	}
}
