// Package disk writes filesystem and whole-disk images with go-diskfs:
// ext4 root filesystems from a directory tree or a tar stream, FAT32 EFI
// system partitions (FAT16 for small boot images), and GPT or MBR disks that boot on
// BIOS and UEFI with Debian's syslinux (mbr.bin/gptmbr.bin placed by this
// package, `syslinux --install --offset` for ldlinux.sys, syslinux.efi as
// EFI/BOOT/BOOTX64.EFI).
//
// Squashfs images are staged in a directory and packed by mksquashfs
// (squashfs-tools), because go-diskfs v1.9.4 cannot pack symlinks.
//
// No root, loop device or mount is needed. What the source holds maps to
// the image like this:
//   - regular files, directories, symlinks: copied with mode, owner and
//     modification time; symlinks are stored as they are and never
//     followed, so an absolute link in a source tree cannot pull host
//     files in;
//   - hard links: go-diskfs v1.9.4 cannot write them, so each link becomes
//     an independent copy of the file (Result.HardLinksCopied counts them);
//   - device nodes, FIFOs and sockets: go-diskfs cannot write them to ext4,
//     so they are skipped and listed in Result.Skipped; the kernel's
//     devtmpfs provides /dev at boot.
//
// Paths that escape the tree (.. in a tar entry, an entry below a symlink),
// unreadable files and sources larger than the image are errors, and the
// output file is only renamed into place when the whole image is written.
//
// Images are reproducible: timestamps come from the source or from
// Options.Time, and every UUID (filesystem, GPT disk and partitions) is
// derived from Options.Seed, so the same inputs give the same bytes.
package disk
