package datadir

import "testing"

// TestLayout pins the paths: existing frontends have their state there.
func TestLayout(t *testing.T) {
	d := Dir("/var/lib/ironbark")
	for got, want := range map[string]string{
		d.Store():              "/var/lib/ironbark/ironbark.db",
		d.Settings():           "/var/lib/ironbark/controller.json",
		d.SecretKey():          "/var/lib/ironbark/secret.key",
		d.Images():             "/var/lib/ironbark/images",
		d.Credentials("alice"): "/var/lib/ironbark/credentials/alice",
		d.PKI():                "/var/lib/ironbark/pki",
		d.PXEBoot():            "/var/lib/ironbark/pxe/boot",
	} {
		if got != want {
			t.Errorf("got %s, want %s", got, want)
		}
	}
	if Default != d {
		t.Errorf("Default is %s", Default)
	}
}
