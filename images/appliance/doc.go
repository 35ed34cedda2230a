// Package appliance builds an appliance's disk image from its profile
// (roll.Profile, the graph walk's output): a Debian 12 root tree made by
// mmdebstrap from Debian's archive with the profile's packages (or, for
// the lab's os "busybox", a tree of the host's busybox-static and a given
// kernel), then the profile's files and post scripts applied inside the
// tree, then images/disk writes a GPT disk (BIOS boot partition, ESP,
// ext4 root) that GRUB boots on BIOS and UEFI from the root's
// /boot/grub/grub.cfg: the profile's own, or one written here for the
// newest kernel (and Xen, when the tree has one).
//
// Caches, under Config.CacheDir: debs/ keeps every package downloaded so
// later builds fetch nothing; base/<key>/ keeps finished base trees keyed
// by what makes them (suite, arch, mirror, sorted package set, epoch,
// mmdebstrap version), so a rebuild after a changed file or script only
// mounts an overlayfs over the base (or copies it where overlayfs cannot
// mount), re-applies files and scripts and writes the disk.
//
// The disk: partition 1 the ESP (FAT32, GRUB's BOOTX64.EFI; the installer
// writes the node identity there and /etc/fstab mounts it on /boot/efi),
// 2 the BIOS boot partition (GRUB's core.img), 3 the ext4 root (label
// root).
//
// Same inputs, same bytes: SOURCE_DATE_EPOCH for mmdebstrap and scripts,
// every time in the image clamped to it, UUIDs derived from the
// appliance's name. Nothing is left behind on failure: the output file
// appears only when complete, and errors name the roll and node file that
// asked for the failing package or script.
package appliance
