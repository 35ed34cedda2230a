package sshkeys

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"os"
	"strings"
	"testing"
)

// pub makes an authorized_keys line of type typ whose body has the
// type's fields, each of 32 bytes of value b.
func pub(typ string, b byte, comment string) string {
	blob := binary.BigEndian.AppendUint32(nil, uint32(len(typ)))
	blob = append(blob, typ...)
	for range types[typ] {
		blob = binary.BigEndian.AppendUint32(blob, 32)
		for range 32 {
			blob = append(blob, b)
		}
	}
	s := typ + " " + base64.StdEncoding.EncodeToString(blob)
	if comment != "" {
		s += " " + comment
	}
	return s
}

var (
	keyA = pub("ssh-ed25519", 1, "admin@frontend")
	keyB = pub("ssh-ed25519", 2, "ops@laptop")
	keyC = pub("ecdsa-sha2-nistp256", 3, "")
)

func TestParse(t *testing.T) {
	text := "# the cluster's admins\n\n" + keyA + "\r\n" +
		`from="10.1.0.0/16",command="echo \"hi there\"",no-pty ` + keyB + "\n  " + keyC + "  \n"
	keys, err := Parse(text)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 3 {
		t.Fatalf("%d keys, want 3: %+v", len(keys), keys)
	}
	if keys[0].String() != keyA || keys[0].Line != 3 || keys[0].Comment != "admin@frontend" {
		t.Errorf("first key %+v", keys[0])
	}
	if keys[1].Options != `from="10.1.0.0/16",command="echo \"hi there\"",no-pty` || keys[1].Type != "ssh-ed25519" || keys[1].Comment != "ops@laptop" {
		t.Errorf("key with options %+v", keys[1])
	}
	if keys[2].String() != keyC || keys[2].Line != 5 {
		t.Errorf("third key %+v", keys[2])
	}
	if keys, err := Parse(" \n# nothing\n"); err != nil || len(keys) != 0 {
		t.Errorf("blank text: %v %v", keys, err)
	}
}

func mustBlob(line string) []byte {
	b, err := base64.StdEncoding.DecodeString(strings.Fields(line)[1])
	if err != nil {
		panic(err)
	}
	return b
}

// TestParseRealKeys reads keys of every type ssh-keygen makes.
func TestParseRealKeys(t *testing.T) {
	b, err := os.ReadFile("testdata/authorized_keys")
	if err != nil {
		t.Fatal(err)
	}
	keys, err := Parse(string(b))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, k := range keys {
		got = append(got, k.Type)
	}
	want := "ssh-dss ecdsa-sha2-nistp256 ecdsa-sha2-nistp384 ecdsa-sha2-nistp521 ssh-ed25519 ssh-rsa ssh-ed25519"
	if strings.Join(got, " ") != want {
		t.Fatalf("types %v, want %s", got, want)
	}
	if keys[6].Options == "" || keys[6].Comment != "ed25519@testdata" {
		t.Errorf("the key with options: %+v", keys[6])
	}
	// The same key twice (once with options): merged once.
	merged, _, err := Merge("", string(b))
	if err != nil || strings.Count(merged, "\n") != 6 {
		t.Errorf("merged:\n%s (%v)", merged, err)
	}
}

func TestParseRefuses(t *testing.T) {
	for _, c := range []struct{ name, text, want string }{
		{"no body", "ssh-ed25519", "without its base64 body"},
		{"not base64", "ssh-ed25519 notbase64! me", "not base64"},
		{"body of another type", "ssh-rsa " + strings.Fields(keyA)[1], "does not hold a ssh-rsa key"},
		{"type only in body", "ssh-ed25519 " + base64.StdEncoding.EncodeToString(append([]byte{0, 0, 0, 11}, "ssh-ed25519"...)), "holds 0 fields after the type"},
		{"cut short", "ssh-ed25519 " + strings.Fields(keyA)[1][:40], "the ssh-ed25519 key's body"},
		{"field past the end", "ssh-rsa " + base64.StdEncoding.EncodeToString(append([]byte{0, 0, 0, 7}, "ssh-rsa\x00\x00\x01\x00abc"...)), "runs past its end"},
		{"two bodies pasted", "ssh-ed25519 " + base64.StdEncoding.EncodeToString(append(mustBlob(keyA), mustBlob(keyB)...)), "holds 3 fields"},
		{"unknown type", "ssh-foo AAAA me", `key type "ssh-foo"`},
		{"private key pasted", "-----BEGIN OPENSSH PRIVATE KEY-----", "is not one OpenSSH knows"},
		{"options then junk", `no-pty,from="x" hello world`, `after the options, key type "hello"`},
		{"options alone", `no-pty,from="x"`, "options without a key"},
		{"open quote", `from="10.0.0.1 ` + keyA, "unterminated quote"},
		{"second line bad", keyA + "\nssh-ed25519 AAAA\n", "line 2:"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse(c.text)
			if err == nil || !errors.Is(err, ErrSyntax) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Parse(%q) = %v, want an ErrSyntax saying %q", c.text, err, c.want)
			}
		})
	}
}

func TestMerge(t *testing.T) {
	for _, c := range []struct {
		name, existing, add, want string
		changed                   bool
	}{
		{"into nothing", "", keyA, keyA + "\n", true},
		{"nothing to add", keyA + "\n", "", keyA + "\n", false},
		{"already there", keyA + "\n", keyA, keyA + "\n", false},
		{"same key, other comment and options", "no-pty " + keyA + "\n", strings.TrimSuffix(keyA, "admin@frontend") + "someone-else", "no-pty " + keyA + "\n", false},
		{"appended after the image's", "# baked\n" + keyA, keyB + "\n" + keyC, "# baked\n" + keyA + "\n" + keyB + "\n" + keyC + "\n", true},
		{"duplicates in add", "", keyB + "\n" + keyB + "\n" + keyA, keyB + "\n" + keyA + "\n", true},
		{"image's unreadable lines kept", "weird-type AAAA x\n", keyA, "weird-type AAAA x\n" + keyA + "\n", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, changed, err := Merge(c.existing, c.add)
			if err != nil {
				t.Fatal(err)
			}
			if got != c.want || changed != c.changed {
				t.Errorf("Merge = %q (changed %v), want %q (changed %v)", got, changed, c.want, c.changed)
			}
		})
	}
	if got, _, err := Merge(keyA+"\n", keyB+"\nnot a key\n"); err == nil || got != "" {
		t.Errorf("Merge with a bad line = %q, %v; want an error and nothing", got, err)
	}
}

// FuzzParse: whatever Parse accepts re-reads to the same keys from their
// String form, and merging it into itself changes nothing.
func FuzzParse(f *testing.F) {
	for _, s := range []string{keyA, keyB + "\n" + keyC, `command="a \"b\" c" ` + keyA, "# c\n\n", `from="x`, "ssh-rsa AAAA"} {
		f.Add(s)
	}
	if b, err := os.ReadFile("testdata/authorized_keys"); err == nil {
		f.Add(string(b))
	}
	f.Fuzz(func(t *testing.T, text string) {
		keys, err := Parse(text)
		if err != nil {
			return
		}
		var lines []string
		for _, k := range keys {
			lines = append(lines, k.String())
		}
		again, err := Parse(strings.Join(lines, "\n"))
		if err != nil {
			t.Fatalf("re-parse of %q: %v", lines, err)
		}
		for i := range keys {
			if again[i].String() != keys[i].String() {
				t.Fatalf("key %d: %q re-read as %q", i, keys[i].String(), again[i].String())
			}
		}
		merged, _, err := Merge(strings.Join(lines, "\n")+"\n", text)
		if err != nil || merged != strings.Join(lines, "\n")+"\n" && len(lines) > 0 {
			t.Fatalf("merging %q into itself: %q, %v", text, merged, err)
		}
	})
}
