// Package lab is the test-support kit for end-to-end tests on real parts:
// the guest kernel and busybox from Debian's packages, libvirtd started by
// the test, and network namespaces, bridges and taps that the test creates
// and always removes. Only tests import it.
package lab
