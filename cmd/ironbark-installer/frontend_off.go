//go:build !frontend

package main

import "ironbark/installer"

// frontendInstaller: the node installer PXE serves has none, so nodes'
// initramfs stays free of the TUI, the controller and the store.
func frontendInstaller() installer.FrontendFunc { return nil }
