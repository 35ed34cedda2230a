package pxe

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/")

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if string(want) != got {
		t.Errorf("%s differs from the golden file (go test -update rewrites it):\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

func TestScripts(t *testing.T) {
	c := ScriptConfig{BaseURL: "http://10.1.0.1:8080", KernelArgs: "console=ttyS0"}
	h := Host{Name: "compute-0-3", MAC: "52:54:00:12:34:56"}
	for _, tc := range []struct {
		file string
		boot BootAction
	}{
		{"install.ipxe", BootInstall},
		{"os.ipxe", BootOS},
		{"rescue.ipxe", BootRescue},
	} {
		h.Boot = tc.boot
		golden(t, tc.file, HostScript(c, h, "0123456789ab"))
	}
	golden(t, "unknown.ipxe", UnknownScript(c, "52:54:00:12:34:56"))
	golden(t, "chain.ipxe", ChainScript(c))
}

// TestScriptFinish: the install script tells the installer how to start
// the installed system; rescue never installs, so it carries none.
func TestScriptFinish(t *testing.T) {
	c := ScriptConfig{BaseURL: "http://10.1.0.1:8080", Finish: "kexec"}
	h := Host{Name: "compute-0-3", MAC: "52:54:00:12:34:56", Boot: BootInstall}
	if s := HostScript(c, h, "a"); !strings.Contains(s, " ironbark.finish=kexec\n") {
		t.Errorf("install script without ironbark.finish=kexec:\n%s", s)
	}
	h.Boot = BootRescue
	if s := HostScript(c, h, ""); strings.Contains(s, "ironbark.finish") {
		t.Errorf("rescue script with ironbark.finish:\n%s", s)
	}
}
