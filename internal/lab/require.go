package lab

import (
	"os"
	"os/exec"
	"testing"
)

// InCI reports whether the suite runs under CI=true, where a missing
// prerequisite of an end-to-end test is a failure rather than a skip.
func InCI() bool { return os.Getenv("CI") == "true" }

// Require skips the test (or fails it under CI) unless every named
// command is on PATH and the test runs as root.
func Require(t testing.TB, cmds ...string) {
	t.Helper()
	if testing.Short() && !InCI() {
		t.Skip("end-to-end test skipped in -short mode")
	}
	if os.Geteuid() != 0 {
		Missing(t, "end-to-end tests need root")
	}
	for _, c := range cmds {
		if _, err := exec.LookPath(c); err != nil {
			Missing(t, "command "+c+" not found (make deps installs it)")
		}
	}
}

// Missing reports a missing prerequisite: a skip locally, a failure in CI.
func Missing(t testing.TB, why string) {
	t.Helper()
	if InCI() {
		t.Fatalf("prerequisite missing under CI=true: %s", why)
	}
	t.Skipf("prerequisite missing: %s", why)
}
