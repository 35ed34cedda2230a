// Package datadir is the layout of a frontend's data directory, the one
// place that knows where each part of the frontend's state lives: the
// store, the controller's settings, image blobs, account credentials,
// the node CA and the PXE boot files. Commands and domains ask it for
// paths instead of joining their own.
package datadir

import "path/filepath"

// Default is the data directory of an installed frontend.
const Default Dir = "/var/lib/ironbark"

// Dir is a frontend data directory.
type Dir string

// Store is the SQLite store file, used when no PostgreSQL URL is set.
func (d Dir) Store() string { return d.join("ironbark.db") }

// SecretKey is the key file that seals the secrets kept in the store
// (access keys' secrets), outside the database so that a copy of the
// database alone holds none. Every controller on one PostgreSQL store
// needs the same file.
func (d Dir) SecretKey() string { return d.join("secret.key") }

// Settings is the controller's settings file (controller.Settings).
func (d Dir) Settings() string { return d.join("controller.json") }

// Images is the image store: the root of the content-addressed blobs
// (images/blobstore) that machine images, kernels and appliance images
// are kept in.
func (d Dir) Images() string { return d.join("images") }

// Credentials is where an account's eucarc and AWS CLI files live.
func (d Dir) Credentials(account string) string { return d.join("credentials", account) }

// PKI is the certificate authority of the node API.
func (d Dir) PKI() string { return d.join("pki") }

// PXEBoot holds the installer kernel and initramfs the PXE service boots.
func (d Dir) PXEBoot() string { return d.join("pxe", "boot") }

func (d Dir) join(parts ...string) string {
	return filepath.Join(append([]string{string(d)}, parts...)...)
}
