// Package e2e runs the node agent end to end on real parts: libvirtd and
// virtlogd started by the test (internal/lab), a guest booted under qemu
// TCG from a Debian cloud kernel and a busybox initramfs made in the test,
// the controller's cluster side in-process, and ironbark-node as a real
// process that the test kills and restarts.
package e2e
