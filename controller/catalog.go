package controller

import (
	"context"
	"fmt"
	"regexp"
	"strings"

	"ironbark/images/blobstore"
	"ironbark/internal/store"
)

// ImageCatalog is the controller's image table as the image tools use it
// (`ironbark image import|list`, the images package's Catalog): the
// controller owns the table, its schema and its rules, and offers only
// this to code outside.
type ImageCatalog struct{ db *store.DB }

// OpenImageCatalog applies the controller's migrations to db, so image
// import works before the controller's first start, and returns the
// catalog on it.
func OpenImageCatalog(ctx context.Context, db *store.DB) (*ImageCatalog, error) {
	if err := db.Migrate(ctx, Migrations()); err != nil {
		return nil, err
	}
	return &ImageCatalog{db: db}, nil
}

// Register records an image whose blob is in the image store and returns
// its id; see RegisterStoredImage.
func (c *ImageCatalog) Register(ctx context.Context, r ImageRecord) (string, error) {
	return RegisterStoredImage(ctx, c.db, r)
}

// CountDigest says how many registered images use the blob digest.
func (c *ImageCatalog) CountDigest(ctx context.Context, digest string) (int, error) {
	var n int
	if err := c.db.QueryRow(ctx, `SELECT COUNT(*) FROM images WHERE digest = ?`, digest).Scan(&n); err != nil {
		return 0, fmt.Errorf("count images of %s: %w", digest, err)
	}
	return n, nil
}

// CatalogImage is a registered image as the catalog lists it; Owner is
// the owning account's id.
type CatalogImage struct {
	ImageRecord
	ID    string
	State string
}

// Images lists every registered image, by id.
func (c *ImageCatalog) Images(ctx context.Context) ([]CatalogImage, error) {
	rows, err := c.db.Query(ctx, `SELECT id, name, kind, format, account_id, state, digest, size, public FROM images ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("list images: %w", err)
	}
	defer rows.Close()
	var out []CatalogImage
	for rows.Next() {
		var im CatalogImage
		var public int
		if err := rows.Scan(&im.ID, &im.Name, &im.Kind, &im.Format, &im.Owner, &im.State, &im.Digest, &im.Size, &public); err != nil {
			return nil, fmt.Errorf("list images: %w", err)
		}
		im.Public = public != 0
		out = append(out, im)
	}
	return out, rows.Err()
}

// The image-name rule, EC2's: 3 to 128 of these characters.
const (
	imageNameChars = `A-Za-z0-9()\[\] ./'@_-`
	minImageName   = 3
	maxImageName   = 128
)

var notImageName = regexp.MustCompile("[^" + imageNameChars + "]+")

// CleanImageName makes a valid image name of s: each run of characters
// EC2 does not allow becomes "-", a short name is padded with "_", a
// long one cut.
func CleanImageName(s string) string {
	n := notImageName.ReplaceAllString(s, "-")
	if len(n) < minImageName {
		n += strings.Repeat("_", minImageName-len(n))
	}
	if len(n) > maxImageName {
		n = n[:maxImageName]
	}
	return n
}

// canonicalDigest reports whether s is a blob digest as the image store
// writes it: sha256:<64 lower-case hex digits>.
func canonicalDigest(s string) bool {
	d, err := blobstore.ParseDigest(s)
	return err == nil && string(d) == s
}
