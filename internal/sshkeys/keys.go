package sshkeys

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// Key is one key line of an authorized_keys file: [options] type base64
// [comment].
type Key struct {
	Options string // e.g. from="10.0.0.0/8",no-pty; "" for none
	Type    string // ssh-ed25519, ssh-rsa, ...
	Blob    string // the base64 body, as written
	Comment string
	Line    int // 1-based line in the text it was read from
}

// String is the key as an authorized_keys line (no newline).
func (k Key) String() string {
	var b strings.Builder
	if k.Options != "" {
		b.WriteString(k.Options)
		b.WriteByte(' ')
	}
	b.WriteString(k.Type)
	b.WriteByte(' ')
	b.WriteString(k.Blob)
	if k.Comment != "" {
		b.WriteByte(' ')
		b.WriteString(k.Comment)
	}
	return b.String()
}

// id is what makes two lines the same key: its type and body, whatever
// their options or comments.
func (k Key) id() string { return k.Type + " " + k.Blob }

// types are the public key types OpenSSH (9.x) accepts for users, with
// how many SSH strings (or mpints) follow the type in a key's body
// (RFC 4253 6.6, RFC 5656 3.1, RFC 8709 4, OpenSSH PROTOCOL.u2f).
var types = map[string]int{
	"ssh-ed25519": 1, "ssh-rsa": 2, "ssh-dss": 4,
	"ecdsa-sha2-nistp256": 2, "ecdsa-sha2-nistp384": 2, "ecdsa-sha2-nistp521": 2,
	"sk-ssh-ed25519@openssh.com": 2, "sk-ecdsa-sha2-nistp256@openssh.com": 3,
}

// checkBody checks that a key's decoded body is its type, then exactly
// the fields that type has, each in bounds and non-empty (an ed25519
// key's 32 bytes).
func checkBody(typ string, blob []byte) error {
	fields := make([][]byte, 0, 1+types[typ])
	for len(blob) > 0 {
		if len(blob) < 4 {
			return errors.New("it ends inside a length")
		}
		n := binary.BigEndian.Uint32(blob)
		if uint64(n) > uint64(len(blob)-4) {
			return errors.New("a field runs past its end")
		}
		fields = append(fields, blob[4:4+n])
		blob = blob[4+n:]
	}
	if len(fields) == 0 || string(fields[0]) != typ {
		return fmt.Errorf("it does not hold a %s key", typ)
	}
	if len(fields) != 1+types[typ] {
		return fmt.Errorf("it holds %d fields after the type, a %s key has %d (cut short or pasted twice?)", len(fields)-1, typ, types[typ])
	}
	for _, f := range fields[1:] {
		if len(f) == 0 {
			return errors.New("it has an empty field")
		}
	}
	if strings.HasSuffix(typ, "ed25519") || strings.Contains(typ, "ed25519@") {
		if len(fields[1]) != 32 {
			return fmt.Errorf("its ed25519 key is %d bytes, not 32", len(fields[1]))
		}
	}
	return nil
}

// ErrSyntax is returned (wrapped, with the line) for text that is not
// authorized_keys lines.
var ErrSyntax = errors.New("not an OpenSSH authorized_keys line")

// maxLine bounds a line: an RSA-16384 key is under 3 KiB of base64.
const maxLine = 16 << 10

// Parse reads authorized_keys text: one key a line, blank lines and
// #-comments allowed. Any other line fails the whole text, with its
// number, so a caller never keeps half of what it was given.
func Parse(text string) ([]Key, error) {
	var keys []Key
	for i, l := range strings.Split(text, "\n") {
		l = strings.TrimSpace(strings.TrimSuffix(l, "\r"))
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		k, err := ParseLine(l)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", i+1, err)
		}
		k.Line = i + 1
		keys = append(keys, k)
	}
	return keys, nil
}

// ParseLine reads one key line.
func ParseLine(l string) (Key, error) {
	l = strings.TrimSpace(l)
	if len(l) > maxLine {
		return Key{}, fmt.Errorf("%w: longer than %d bytes", ErrSyntax, maxLine)
	}
	if strings.ContainsAny(l, "\n\x00") {
		return Key{}, fmt.Errorf("%w: holds a newline or NUL", ErrSyntax)
	}
	var k Key
	first, rest := cutField(l)
	if types[first] == 0 {
		// Not a key type: options, or a type sshd does not know.
		looksLikeOptions := strings.ContainsAny(first, "=,\"")
		opts, after, err := cutOptions(l)
		if err != nil && looksLikeOptions {
			return Key{}, err
		}
		t, r := cutField(after)
		switch {
		case err == nil && types[t] > 0:
			k.Options, first, rest = opts, t, r
		case !looksLikeOptions:
			return Key{}, fmt.Errorf("%w: key type %q is not one OpenSSH knows", ErrSyntax, first)
		case t == "":
			return Key{}, fmt.Errorf("%w: options without a key: want [OPTIONS] TYPE BASE64 [COMMENT]", ErrSyntax)
		default:
			return Key{}, fmt.Errorf("%w: after the options, key type %q is not one OpenSSH knows", ErrSyntax, t)
		}
	}
	k.Type = first
	k.Blob, rest = cutField(rest)
	k.Comment = strings.TrimSpace(rest)
	if k.Blob == "" {
		return Key{}, fmt.Errorf("%w: %s key without its base64 body", ErrSyntax, k.Type)
	}
	blob, err := base64.StdEncoding.DecodeString(k.Blob)
	if err != nil {
		return Key{}, fmt.Errorf("%w: the %s key's body is not base64", ErrSyntax, k.Type)
	}
	if err := checkBody(k.Type, blob); err != nil {
		return Key{}, fmt.Errorf("%w: the %s key's body: %w", ErrSyntax, k.Type, err)
	}
	return k, nil
}

// cutField splits off the first space- or tab-separated field.
func cutField(s string) (string, string) {
	s = strings.TrimLeft(s, " \t")
	if i := strings.IndexAny(s, " \t"); i >= 0 {
		return s[:i], s[i+1:]
	}
	return s, ""
}

// cutOptions splits off the options field: up to the first space or tab
// outside double quotes (a quote may be escaped with a backslash), as
// sshd reads it.
func cutOptions(s string) (string, string, error) {
	quoted := false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\' && quoted && i+1 < len(s) && s[i+1] == '"':
			i++
		case c == '"':
			quoted = !quoted
		case (c == ' ' || c == '\t') && !quoted:
			return s[:i], s[i+1:], nil
		}
	}
	if quoted {
		return "", "", fmt.Errorf("%w: unterminated quote in its options", ErrSyntax)
	}
	return s, "", nil
}

// Merge adds the keys of add to the authorized_keys text existing:
// existing stays as it is, byte for byte (lines this package cannot read
// too: they are sshd's to judge), and each key of add that is not already
// there (the same type and body, whatever the options or comment) is
// appended once. add must parse (see Parse); on error nothing is merged.
// The result ends with a newline unless it is empty; changed says whether
// it differs from existing.
func Merge(existing, add string) (merged string, changed bool, err error) {
	keys, err := Parse(add)
	if err != nil {
		return "", false, err
	}
	have := map[string]bool{}
	for _, l := range strings.Split(existing, "\n") {
		l = strings.TrimSpace(strings.TrimSuffix(l, "\r"))
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if k, err := ParseLine(l); err == nil {
			have[k.id()] = true
		}
	}
	var b strings.Builder
	b.WriteString(existing)
	if existing != "" && !strings.HasSuffix(existing, "\n") {
		b.WriteByte('\n')
	}
	for _, k := range keys {
		if have[k.id()] {
			continue
		}
		have[k.id()] = true
		k.Line = 0
		b.WriteString(k.String())
		b.WriteByte('\n')
	}
	return b.String(), b.String() != existing, nil
}
