// Package pxe provisions compute nodes the way Rocks did: a hosts table
// (name, MAC, IP, appliance, rack, rank, boot action), insert-ethers style
// discovery sessions that name unknown MACs <appliance>-<rack>-<rank>, an
// HTTP boot server that hands each node an iPXE script for its boot action
// (install, os, rescue) plus the installer's kernel, initramfs, install
// profile (with the node identity and root's SSH keys, the host's
// ssh_authorized_keys attribute: AttrKeys) and the appliance's whole-disk image (kept by digest in the
// frontend's blob store, images/blobstore), and a Service that runs DHCP (pxe/dhcp), TFTP
// (pxe/tftp), router advertisements (pxe/ra) and HTTP boot on one
// interface. State lives in the store so `ironbark host ...` works while
// the service runs.
package pxe
