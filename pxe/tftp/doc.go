// Package tftp is ironbark's read-only TFTP server for boot loaders
// (undionly.kpxe, snponly.efi, ipxe.efi) on a cluster's private network.
//
// Files come from a root directory, opened through os.Root so that no
// name, ".." element or symlink reaches outside it, and from in-memory or
// generated files registered with Add and AddFunc (which win over the
// directory). Write requests are refused.
//
// The protocol is its own small read path (RFC 1350 with options, RFC
// 2347): blksize (RFC 2348), timeout and tsize (RFC 2349) and windowsize
// (RFC 7440) are negotiated. pin/tftp, used before, drops windowsize
// from its OACK in every release the module proxy serves (v3.2.0), and
// clients then fall back to lock-step, one block per round trip. With a
// window the server sends windowsize blocks, in one sendmmsg, before
// waiting for an ACK; an ACK inside the window restarts it after the
// acknowledged block, a timeout sends the window again, and a repeated
// ACK is answered at most once per window (never in lock-step, RFC 1123).
// Unknown options and values out of range are ignored, as RFC 2347 asks.
//
// A lock-step transfer (no windowsize: most PXE ROMs) is one round trip
// per block, so its speed is the time from an ACK's arrival to the next
// block's send. Such transfers run on a blocking socket each, sleeping
// in recv(2) until the kernel wakes their thread, as a forking server's
// processes do, instead of on Go's network poller (whose epoll wake-up
// and goroutine hand-off doubled the CPU per block at one client); the
// server keeps a P per such thread (procs.go). Windowed transfers stay
// on the poller, where a window goes out in one sendmmsg.
// Every transfer is logged with its client, size, options and outcome.
package tftp
