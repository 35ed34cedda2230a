package shacrypt

import (
	"os/exec"
	"strings"
	"testing"
)

// The reference hashes are glibc's (Drepper's specification's test
// vectors, as `openssl passwd -6` and crypt(3) print them).
func TestKnownHashes(t *testing.T) {
	for _, tc := range []struct {
		pw, salt string
		rounds   int
		want     string
	}{
		{"Hello world!", "saltstring", 5000, "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1"},
		{"Hello world!", "saltstringsaltstring", 10000, "$6$rounds=10000$saltstringsaltst$OW1/O6BYHV6BcXZu8QVeXbDWra3Oeqh0sbHbbMCVNSnCM/UrjmM0Dp8vOuZeHBy/YTBmSK6H9qs/y3RnOaw5v."},
	} {
		got, err := HashWith(tc.pw, tc.salt, tc.rounds)
		if err != nil {
			t.Fatal(err)
		}
		if got != tc.want {
			t.Errorf("HashWith(%q, %q, %d)\n got %s\nwant %s", tc.pw, tc.salt, tc.rounds, got, tc.want)
		}
		if !Verify(tc.want, tc.pw) || Verify(tc.want, tc.pw+"x") {
			t.Errorf("Verify(%s) is wrong", tc.want)
		}
	}
}

// TestAgainstOpenSSL: fresh salts and passwords of every length around
// the 64-byte block, checked by the system's own implementation.
func TestAgainstOpenSSL(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("no openssl")
	}
	for _, n := range []int{1, 15, 63, 64, 65, 130} {
		pw := strings.Repeat("pässword", n)[:n]
		h, err := Hash(pw)
		if err != nil {
			t.Fatal(err)
		}
		salt := strings.Split(h, "$")[2]
		out, err := exec.Command("openssl", "passwd", "-6", "-salt", salt, pw).Output()
		if err != nil {
			t.Fatalf("openssl: %v", err)
		}
		if strings.TrimSpace(string(out)) != h {
			t.Errorf("password of %d bytes: ours %s, openssl %s", n, h, out)
		}
	}
}

func TestBadInput(t *testing.T) {
	if _, err := HashWith("pw", "a$b", DefaultRounds); err == nil {
		t.Error("a salt with $ was accepted")
	}
	if _, err := HashWith("pw", "salt", 10); err == nil {
		t.Error("10 rounds were accepted")
	}
	if Verify("pbkdf2-sha256$1$a$b", "pw") || Verify("$6$rounds=x$s$h", "pw") {
		t.Error("Verify accepted a hash that is not SHA-512 crypt")
	}
}
