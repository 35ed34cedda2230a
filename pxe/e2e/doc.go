// Package e2e is the PXE end-to-end test: a lab network in a network
// namespace, `ironbark pxe` serving it, `ironbark discover` naming nodes,
// and blank qemu VMs (BIOS and UEFI) that PXE-boot, install the appliance
// image with the node installer, reboot from their own disks and print
// the installed image's marker. Only tests live here.
package e2e
