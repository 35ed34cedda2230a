package images

import (
	"context"
	"fmt"

	"ironbark/controller"
	"ironbark/images/blobstore"
	"ironbark/internal/store"
)

// Listed is one registered image, as `ironbark image list` shows it.
type Listed struct {
	ID, Name, Kind, Format, Owner, State string
	Digest                               string
	Size                                 int64
	Public                               bool
	BlobPresent                          bool // the blob is in this frontend's store
}

// List returns the registered images with a check that each blob is in
// the store. It reads the controller's images table.
func List(ctx context.Context, db *store.DB, blobs *blobstore.Store) ([]Listed, error) {
	if err := db.Migrate(ctx, controller.Migrations()); err != nil {
		return nil, err
	}
	rows, err := db.Query(ctx, `SELECT id, name, kind, format, account_id, state, digest, size, public FROM images ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("list images: %w", err)
	}
	defer rows.Close()
	var out []Listed
	for rows.Next() {
		var l Listed
		var public int
		if err := rows.Scan(&l.ID, &l.Name, &l.Kind, &l.Format, &l.Owner, &l.State, &l.Digest, &l.Size, &public); err != nil {
			return nil, fmt.Errorf("list images: %w", err)
		}
		l.Public = public != 0
		if d, err := blobstore.ParseDigest(l.Digest); err == nil && blobs != nil {
			_, serr := blobs.Size(d)
			l.BlobPresent = serr == nil
		}
		out = append(out, l)
	}
	return out, rows.Err()
}
