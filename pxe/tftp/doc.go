// Package tftp is ironbark's read-only TFTP server for boot loaders
// (undionly.kpxe, snponly.efi, ipxe.efi) on a cluster's private network,
// built on github.com/pin/tftp/v3.
//
// Files come from a root directory, opened through os.Root so that no
// name, ".." element or symlink reaches outside it, and from in-memory or
// generated files registered with Add and AddFunc (which win over the
// directory). Write requests are refused. blksize and tsize (RFC 2348,
// 2349) are negotiated; windowsize (RFC 7440) is not: pin/tftp v3.2.0
// drops that option from its OACK, so clients fall back to lock-step.
// Every transfer is logged with its client, size and outcome.
package tftp
