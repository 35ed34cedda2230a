//go:build frontend

package main

import (
	"ironbark/installer"
	"ironbark/installer/frontendinit"
)

// frontendInstaller: this build is the ISO's, with the frontend installer.
func frontendInstaller() installer.FrontendFunc { return frontendinit.Run }
