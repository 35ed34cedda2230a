package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestTokenFromFileOrStdin: the token need not be on the command line.
func TestTokenFromFileOrStdin(t *testing.T) {
	tok := "ibt1.secret." + strings.Repeat("ab", 32)
	p := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(p, []byte(tok+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := readToken(p, nil); err != nil || got != tok {
		t.Fatalf("from file: %q %v", got, err)
	}
	if got, err := readToken("-", strings.NewReader("  "+tok+"\n")); err != nil || got != tok {
		t.Fatalf("from stdin: %q %v", got, err)
	}
	if _, err := readToken("-", strings.NewReader("not a token")); err == nil {
		t.Fatal("a malformed token was accepted")
	}
	// Bad input is refused before anything starts.
	for _, args := range [][]string{
		{"--token-file", filepath.Join(t.TempDir(), "missing")},
		{"--identity", filepath.Join(t.TempDir(), "missing.json")},
		{"--identity", "", "--state-dir", t.TempDir()}, // no controller at all
	} {
		err := run(context.Background(), args, strings.NewReader(""))
		if err == nil {
			t.Fatalf("%v: accepted", args)
		}
		t.Logf("%v: %v", args, err)
	}
}
