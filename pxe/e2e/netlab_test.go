package e2e

import (
	"os/exec"
	"strings"
	"testing"
)

// run runs a host tool to completion (syslinux for the appliance image).
func run(t testing.TB, name string, args ...string) {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
}
