package nodeapi

import (
	"strings"
	"testing"
)

func TestParseToken(t *testing.T) {
	fp := strings.Repeat("ab", 32)
	s, f, err := ParseToken("  ibt1.secret." + strings.ToUpper(fp) + "\n")
	if err != nil || s != "secret" || f != fp {
		t.Fatalf("got %q %q %v", s, f, err)
	}
	for _, bad := range []string{"", "ibt1", "ibt1..", "ibt2.s." + fp, "ibt1.s." + fp[:10], "ibt1.s." + strings.Repeat("zz", 32), "ibt1.s." + fp + ".x"} {
		if _, _, err := ParseToken(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func FuzzParseToken(f *testing.F) {
	f.Add("ibt1.abc." + strings.Repeat("0f", 32))
	f.Add("ibt1..")
	f.Fuzz(func(t *testing.T, s string) {
		secret, fp, err := ParseToken(s)
		if err == nil && (secret == "" || len(fp) != 64 || strings.Contains(secret, ".")) {
			t.Fatalf("%q parsed to %q %q", s, secret, fp)
		}
	})
}
