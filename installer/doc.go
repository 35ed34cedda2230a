// Package installer is the node installer: a static pure-Go program that
// runs as /init in the installer initramfs. It reads its settings from the
// kernel command line (written by the frontend's iPXE script), loads the
// virtio modules shipped in the initramfs, brings up the NIC, fetches the
// node's install profile, streams the appliance's whole-disk image onto
// the target disk while verifying its sha256 (resuming with Range requests
// if the frontend goes away), writes the node identity into the image's
// boot partition with go-diskfs, merges the profile's SSH keys (the
// frontend's ssh_authorized_keys for the host) into root's
// authorized_keys on the image's ext4 root, reports progress and the result to the
// frontend and starts the installed system: with ironbark.finish=kexec it
// loads the kernel, initramfs and command line the disk's syslinux entry
// names and kexecs into them, skipping the firmware, PXE and the boot
// loader; otherwise (or when the disk has no such entry, e.g. a GRUB/Xen
// one) it reboots. The wire types are in pxe/bootapi.
//
// With ironbark.mode=frontend on the command line (the ISO's default
// entry) the same /init is the frontend installer: it mounts the ISO,
// finds the answer file (ironbark.answers=) or runs the installer screens
// (tui), and lays the frontend down with installer/frontend. ISOSpec makes
// that ISO.
package installer
