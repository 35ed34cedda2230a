package main

import (
	"path/filepath"
	"strings"
	"testing"
)

// A fresh frontend has the built-in rolls enabled and their appliances:
// discovery offers exactly those.
func TestBuiltinAppliances(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	out := mustRun(t, "appliance", "list", "--data-dir", data)
	for _, a := range []string{"compute", "compute-kvm", "frontend"} {
		if !strings.Contains(out, a+" ") {
			t.Errorf("appliance list lacks %s:\n%s", a, out)
		}
		if p := mustRun(t, "appliance", "profile", a, "--data-dir", data); !strings.Contains(p, "openssh-server") {
			t.Errorf("profile of %s:\n%s", a, p)
		}
	}
	if p := mustRun(t, "appliance", "profile", "compute", "--data-dir", data); !strings.Contains(p, "hypervisor-xen") {
		t.Errorf("compute profile without the Xen roll:\n%s", p)
	}
	_, errs, code := ironbark(t, "discover", "--cluster", "c1", "--appliance", "login", "--data-dir", data)
	if code != 1 || !strings.Contains(errs, "compute, compute-kvm, frontend") {
		t.Errorf("discover of no appliance: exit %d, %s", code, errs)
	}
}
