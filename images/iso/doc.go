// Package iso builds the frontend installation ISO: ISO 9660 with Rock
// Ridge (go-diskfs), El Torito boot entries for BIOS (isolinux) and UEFI
// (an efiboot.img FAT image holding a GRUB BOOTX64.EFI made with
// grub-mkimage from Debian's grub-efi-amd64-bin; it reads the kernel and
// initramfs from ISO 9660, since syslinux.efi cannot boot from El
// Torito), and an isohybrid MBR (isohdpfx.bin, written by this
// package) so the same file boots from a CD and from a USB stick, on BIOS
// and UEFI. The ISO carries the kernel, the installer initramfs and a
// rolls/ directory.
//
// Files are staged in a workspace directory of hard links (copies across
// filesystems), because go-diskfs builds ISO images from a host directory.
package iso
