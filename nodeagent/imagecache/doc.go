// Package imagecache keeps a node's image blobs (EMI, EKI, ERI) by digest.
// A blob is downloaded once, resumably (HTTP Range from where a previous
// attempt stopped), verified against its sha256 digest, and only then
// moved into the cache; concurrent launches of the same image share one
// download. A blob that does not match its digest is deleted and reported:
// nothing corrupt is ever cached.
package imagecache
