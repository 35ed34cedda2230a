// Package e2e boots the frontend ISO under qemu (TCG): the frontend
// installer installs unattended from the answer file on the ISO onto a
// blank virtio disk, the machine reboots from that disk, and the
// installed frontend answers EC2 on the public bridge the test made.
package e2e
