// Package provision is issue 5's provisioning benchmark: how long 1, 4
// and 8 blank qemu VMs (TCG, BIOS, virtio NIC and disk) take from power-on
// until they have PXE-booted, been discovered, installed the compute
// appliance, rebooted from their own disks and printed the installed
// image's marker, next to the floor: one VM booting the same kernel
// directly (-kernel/-initrd) to a marker. It is a Go benchmark
// (BenchmarkProvision) run by bench/provision/run; nothing here is
// imported.
package provision
