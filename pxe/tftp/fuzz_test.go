package tftp

import (
	"strings"
	"testing"
)

// FuzzClean: whatever a client sends, an accepted name is relative, has
// no ".." element and no NUL or backslash.
func FuzzClean(f *testing.F) {
	for _, s := range []string{"undionly.kpxe", "../x", "/etc/passwd", "a/./b", `a\..\b`, "a/b/../../..", "...", "..a"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		c, err := Clean(name)
		if err != nil {
			return
		}
		if strings.HasPrefix(c, "/") || strings.ContainsAny(c, "\x00\\") || c == "." || c == "" {
			t.Fatalf("Clean(%q) = %q", name, c)
		}
		for _, el := range strings.Split(c, "/") {
			if el == ".." {
				t.Fatalf("Clean(%q) = %q has ..", name, c)
			}
		}
	})
}
