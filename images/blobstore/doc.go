// Package blobstore is the frontend's content-addressed image store.
//
// Blobs (machine images, kernels, ramdisks, node disk images) live in
// DIR/blobs/sha256/<hex>, named by the sha256 of their bytes. Ingest writes
// to a temporary file in the same directory tree, hashes while copying,
// checks the expected digest and size when the caller knows them, fsyncs
// and renames: a reader never sees a partial blob, and a truncated or
// corrupt upload leaves nothing behind.
//
// Store.Handler serves GET and HEAD of <mount>/sha256/<hex> with Range
// support (http.ServeContent), for node agents' image caches and the node
// installer. Blobs are immutable, so responses carry a strong ETag.
package blobstore
