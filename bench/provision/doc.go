// Package provision is the provisioning benchmark (issues 5 and 11): how
// long 1, 4, 8 and 16 blank qemu VMs (TCG, BIOS, virtio NIC and disk)
// take from power-on until they are enrolled nodes: PXE-booted,
// discovered, the compute appliance installed, started from their own
// disks (kexec by default, or a reboot through the firmware), the real
// node agent (on libvirt's test driver) enrolled with the controller and
// seen up, next to the floor: VMs booting the same kernel directly
// (-kernel/-initrd) to a marker, one alone and as many at once as the
// round has. Each phase (firmware, DHCP/TFTP, iPXE, kernel+initramfs,
// image stream and verify, reboot, first boot, enrollment) is dated from
// the pxe server's log, the consoles and the controller's log. It is a Go
// benchmark (BenchmarkProvision) run by bench/provision/run; nothing here
// is imported.
package provision
