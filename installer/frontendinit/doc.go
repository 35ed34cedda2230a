// Package frontendinit is the ISO's frontend installer as /init: it
// mounts the install medium, then installs the frontend unattended from an
// answer file or through the installer screens, and reboots into it. It is
// linked only into the installer binary built with -tags frontend (the
// ISO's), never into the node installer that PXE serves.
package frontendinit
