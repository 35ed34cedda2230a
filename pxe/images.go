package pxe

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"ironbark/images/blobstore"
	"ironbark/internal/store"
)

// ApplianceImages says which whole-disk image installs an appliance and
// serves the images by digest (with Range requests) under
// bootapi.PathImages.
type ApplianceImages interface {
	// Image returns the digest (sha256:<hex>) and size of the appliance's
	// image.
	Image(ctx context.Context, appliance string) (blobstore.Digest, int64, error)
	// Handler serves /sha256/<hex>, mounted at bootapi.PathImages.
	Handler() http.Handler
}

// ErrNoImage is returned for an appliance with no image.
var ErrNoImage = errors.New("no image for appliance")

// BlobImages keeps appliance images in the frontend's content-addressed
// blob store and which digest each appliance installs in the store's
// pxe_appliances table. The digest a node is told is the one it gets,
// across frontend restarts.
type BlobImages struct {
	DB    *store.DB
	Blobs *blobstore.Store
}

// Set ingests the image file into the blob store and makes it the one
// appliance installs.
func (b *BlobImages) Set(ctx context.Context, appliance, file string) (blobstore.Digest, int64, error) {
	if err := ValidAppliance(appliance); err != nil {
		return "", 0, err
	}
	d, size, err := b.Blobs.PutFile(ctx, file)
	if err != nil {
		return "", 0, fmt.Errorf("store image of %s: %w", appliance, err)
	}
	if err := RegisterImage(ctx, b.DB, appliance, d, size); err != nil {
		return "", 0, err
	}
	return d, size, nil
}

// RegisterImage makes the blob d (already in the store, or put there
// next, as the frontend installer does) what appliance installs.
func RegisterImage(ctx context.Context, db *store.DB, appliance string, d blobstore.Digest, size int64) error {
	if err := ValidAppliance(appliance); err != nil {
		return err
	}
	_, err := db.Exec(ctx, `INSERT INTO pxe_appliances (appliance, digest, size, updated_at) VALUES (?, ?, ?, ?)
		ON CONFLICT (appliance) DO UPDATE SET digest = excluded.digest, size = excluded.size, updated_at = excluded.updated_at`,
		appliance, string(d), size, time.Now().Unix())
	if err != nil {
		return fmt.Errorf("set image of %s: %w", appliance, err)
	}
	return nil
}

// Image implements ApplianceImages.
func (b *BlobImages) Image(ctx context.Context, appliance string) (blobstore.Digest, int64, error) {
	var d string
	var size int64
	err := b.DB.QueryRow(ctx, `SELECT digest, size FROM pxe_appliances WHERE appliance = ?`, appliance).Scan(&d, &size)
	if errors.Is(err, sql.ErrNoRows) {
		return "", 0, fmt.Errorf("%s (set one with `ironbark pxe image %s FILE`): %w", appliance, appliance, ErrNoImage)
	}
	if err != nil {
		return "", 0, fmt.Errorf("image of %s: %w", appliance, err)
	}
	return blobstore.Digest(d), size, nil
}

// Handler implements ApplianceImages. The blob store also holds tenants'
// images: only blobs that some appliance installs are served here, every
// other digest is 404 as if it did not exist.
func (b *BlobImages) Handler() http.Handler {
	blobs := b.Blobs.Handler()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hex, ok := strings.CutPrefix(r.URL.Path, "/sha256/")
		if !ok || strings.Contains(hex, "/") {
			http.NotFound(w, r)
			return
		}
		var n int
		err := b.DB.QueryRow(r.Context(), `SELECT COUNT(*) FROM pxe_appliances WHERE digest = ?`, "sha256:"+hex).Scan(&n)
		if err != nil {
			http.Error(w, "image lookup: internal error", http.StatusInternalServerError)
			return
		}
		if n == 0 {
			http.NotFound(w, r)
			return
		}
		blobs.ServeHTTP(w, r)
	})
}
