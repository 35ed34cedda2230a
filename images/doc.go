// Package images is the image domain of ironbark: everything the cloud
// boots is built here, without root, loop devices or mounts.
//
// Sub-packages, one job each:
//   - initramfs: newc cpio archives (+gzip/zstd) with kernel modules in
//     modules.dep order, for the node installer and the ISO.
//   - blobstore: the content-addressed (sha256) image store on the frontend
//     and its HTTP handler (GET/HEAD with Range) for node agents and
//     installers.
//   - disk: ext4/FAT32/squashfs filesystems and GPT/MBR disk images with
//     go-diskfs, boot code from Debian's syslinux placed by our code.
//   - iso: the frontend ISO (El Torito BIOS + UEFI, isohybrid).
//
// This package itself holds the EC2 machine image workflow (build an EMI
// plus EKI/ERI, import raw/qcow2 into the store and register it with the
// controller).
package images
