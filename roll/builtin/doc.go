// Package builtin holds the rolls ironbark ships, in Rocks' vocabulary
// (roll.xml, nodes/*.xml, graphs/default/*.xml): base (Debian minimal,
// ssh, time sync, the node identity, and the appliances compute,
// compute-kvm and frontend), hypervisor-xen (Xen, dom0 kernel, xl,
// libvirt's Xen driver, the Xen boot entry), hypervisor-kvm,
// ironbark-node (the agent as a service on the private bridge) and
// frontend (controller, PXE, image store). They are embedded in the
// binary and read with the roll package's loader like any other roll.
package builtin
