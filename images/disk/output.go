package disk

import (
	"context"
	"fmt"
	"os"

	"ironbark/internal/atomicfile"
)

// FSType is a filesystem image type.
type FSType string

const (
	FSExt4     FSType = "ext4"
	FSSquashfs FSType = "squashfs"
)

// BuildFilesystem writes a bare filesystem image (no partition table) of
// src to out. size 0 computes the size from the content. out appears only
// when the image is complete.
func BuildFilesystem(ctx context.Context, out string, t FSType, src Source, size int64, o FSOptions) (*Result, error) {
	var res *Result
	err := atomicfile.WriteWith(out, 0o644, func(f *os.File) error {
		var err error
		switch t {
		case FSExt4, "":
			res, err = WriteExt4(ctx, f, 0, size, src, o)
		case FSSquashfs:
			res, err = WriteSquashfs(ctx, f, src, size, o)
		default:
			err = fmt.Errorf("unknown filesystem type %q (ext4, squashfs)", t)
		}
		return err
	})
	return res, err
}
