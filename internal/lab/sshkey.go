package lab

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// SSHKeyPair makes an ed25519 key pair without a passphrase in dir (the
// admin's key an e2e test installs and then logs in with); it returns the
// private key's path and the public key's line.
func SSHKeyPair(t T, dir, comment string) (private, public string) {
	t.Helper()
	private = filepath.Join(dir, "admin_ed25519")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", private).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v: %s", err, out)
	}
	pub, err := os.ReadFile(private + ".pub")
	if err != nil {
		t.Fatalf("ssh-keygen: %v", err)
	}
	return private, strings.TrimSpace(string(pub))
}
