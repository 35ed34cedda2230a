package lab

import (
	"os"
	"testing"
)

func TestGuestKernel(t *testing.T) {
	k := GuestKernel(t)
	if _, err := os.Stat(k.Vmlinuz); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(k.ModulesDir() + "/modules.dep"); err != nil {
		t.Fatalf("kernel %s has no modules.dep: %v", k.Version, err)
	}
	t.Logf("kernel %s at %s", k.Version, k.Vmlinuz)
}
