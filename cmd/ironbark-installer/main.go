// Command ironbark-installer is the node installer, run as /init in the
// installer initramfs the frontend serves over PXE. Build it static:
// CGO_ENABLED=0 go build ./cmd/ironbark-installer. Built with -tags
// frontend it is also the ISO's frontend installer (ironbark.mode=frontend;
// package installer/frontendinit). See package installer.
package main

import (
	"context"
	"fmt"
	"os"

	"ironbark/installer"
)

func main() {
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "ironbark-installer runs as /init of the installer initramfs (pid 1); it reads its settings from the kernel command line")
		os.Exit(2)
	}
	err := installer.Init(context.Background(), frontendInstaller())
	fmt.Fprintf(os.Stderr, "ironbark-installer: %v\n", err)
	select {} // pid 1 must not exit
}
