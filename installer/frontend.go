package installer

import (
	"context"
	"strings"
)

// Kernel command line of the ISO's frontend entry.
const (
	ArgMode    = "ironbark.mode"    // "frontend": the frontend installer
	ArgAnswers = "ironbark.answers" // iso:/PATH, disk:/PATH or an initramfs path
)

// MediumDir is where the frontend installer mounts its medium (the ISO).
const MediumDir = "/run/ironbark/medium"

// FrontendMode says whether the command line asks for the frontend
// installer.
func FrontendMode(cmdline string) bool {
	return cmdArg(cmdline, ArgMode) == "frontend"
}

// CmdArg is the value of key=value on the kernel command line, "" if absent.
func CmdArg(cmdline, key string) string { return cmdArg(cmdline, key) }

// FrontendFunc is the frontend installer's /init (package
// installer/frontendinit). The node installer's binary has none: the ISO's
// initramfs carries the binary built with -tags frontend, so the TUI, the
// controller and the store never reach nodes' PXE initramfs.
type FrontendFunc func(ctx context.Context, cmdline string) error

func cmdArg(cmdline, key string) string {
	for _, f := range strings.Fields(cmdline) {
		if k, v, ok := strings.Cut(f, "="); ok && k == key {
			return v
		}
	}
	return ""
}
