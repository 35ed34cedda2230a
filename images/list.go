package images

import (
	"context"

	"ironbark/controller"
	"ironbark/images/blobstore"
)

// Catalog is the record of registered images that Import writes and List
// reads. The controller owns it (controller.ImageCatalog); this package
// runs no SQL of its own.
type Catalog interface {
	// Register records an image whose blob is stored and returns its id.
	Register(ctx context.Context, r controller.ImageRecord) (string, error)
	// CountDigest says how many registered images use a blob.
	CountDigest(ctx context.Context, digest string) (int, error)
	// Images lists the registered images.
	Images(ctx context.Context) ([]controller.CatalogImage, error)
}

// Listed is one registered image, as `ironbark image list` shows it.
type Listed struct {
	ID, Name, Kind, Format, Owner, State string
	Digest                               string
	Size                                 int64
	Public                               bool
	BlobPresent                          bool // the blob is in this frontend's store
}

// List returns the registered images with a check that each blob is in
// the store.
func List(ctx context.Context, cat Catalog, blobs *blobstore.Store) ([]Listed, error) {
	ims, err := cat.Images(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Listed, len(ims))
	for i, im := range ims {
		l := Listed{ID: im.ID, Name: im.Name, Kind: im.Kind, Format: im.Format, Owner: im.Owner, State: im.State,
			Digest: im.Digest, Size: im.Size, Public: im.Public}
		if d, err := blobstore.ParseDigest(l.Digest); err == nil && blobs != nil {
			_, serr := blobs.Size(d)
			l.BlobPresent = serr == nil
		}
		out[i] = l
	}
	return out, nil
}
