// Package rack brings up a whole ironbark rack on one machine, the way a
// sysadmin would on real hardware: it builds the install ISO (the
// frontend appliance, and the compute appliance carried on it), makes a
// lab (a public bridge toward the host, a private cluster bridge, no
// uplink, no NAT), installs the frontend from the ISO unattended, starts
// discovery on the frontend and powers on blank compute machines that
// PXE-boot from it, install the compute appliance, boot Xen dom0 and
// enroll; then it fetches the eucarc and, when asked, runs an instance
// on a node with the AWS CLI. Every machine is a qemu process (TCG here);
// everything it makes is removed when it ends.
//
// cmd/ironbark-rack (`make rack`) runs it until interrupted; its test
// runs it with Check, which exits once every step has been checked.
// Expensive artifacts are cached under the lab cache: the binaries, the
// compute image, the ISO and the installed frontend disk (a qcow2 base
// each run boots through its own overlay).
package rack
