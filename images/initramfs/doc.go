// Package initramfs builds Linux initramfs archives: the newc ("070701")
// cpio format the kernel unpacks into its rootfs, optionally gzip or zstd
// compressed, without root and without mounting anything.
//
// An archive is described by a Spec: files (regular, directories, symlinks,
// character and block device nodes such as /dev/console), whole host
// directory trees, and kernel modules named by module name ("virtio_net").
// Modules are resolved against a kernel's module directory
// (/lib/modules/VERSION with modules.dep): their dependencies are added and
// LoadOrder gives the order in which /init must insmod them. A modules.dep
// restricted to the shipped modules is written too, so busybox modprobe
// works inside the initramfs.
//
// Output is reproducible: entries keep the order of the Spec, inode
// numbers are assigned sequentially and every timestamp is Spec.ModTime
// (the Unix epoch when zero). The installer initramfs for PXE (package pxe,
// installer) and the frontend ISO (package images/iso) are built with it.
package initramfs
