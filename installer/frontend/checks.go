package frontend

import (
	"crypto/pbkdf2"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"time"
	_ "time/tzdata" // the installer's initramfs has no /usr/share/zoneinfo

	"ironbark/internal/shacrypt"
	"ironbark/internal/sshkeys"
)

var (
	clusterNameRE = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}$`)
	labelRE       = regexp.MustCompile(`^[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$`)
	ifNameRE      = regexp.MustCompile(`^[a-zA-Z0-9_.:-]{1,15}$`)
	rollRE        = regexp.MustCompile(`^[a-z][a-z0-9-]*$`)
)

func checkClusterName(s string) error {
	if !clusterNameRE.MatchString(s) {
		return errors.New("lower-case letters, digits and '-', starting with a letter, at most 63")
	}
	return nil
}

func checkFQDN(s string) error {
	s = strings.TrimSuffix(s, ".")
	labels := strings.Split(s, ".")
	if len(labels) < 2 || len(s) > 253 {
		return errors.New("want a fully qualified name such as frontend.example.org")
	}
	for _, l := range labels {
		if !labelRE.MatchString(l) {
			return fmt.Errorf("%q is not a DNS label", l)
		}
	}
	return nil
}

// checkHost accepts a host name or an IP address (NTP servers).
func checkHost(s string) error {
	if _, err := netip.ParseAddr(s); err == nil {
		return nil
	}
	for _, l := range strings.Split(strings.TrimSuffix(s, "."), ".") {
		if !labelRE.MatchString(l) {
			return fmt.Errorf("%q is neither an address nor a host name", s)
		}
	}
	return nil
}

func checkIfName(s string) error {
	if !ifNameRE.MatchString(s) {
		return errors.New("not an interface name")
	}
	return nil
}

func checkIPv4(s string) error {
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() {
		return fmt.Errorf("%q is not an IPv4 address", s)
	}
	return nil
}

// maskBits turns a dotted netmask (or /N) into a prefix length.
func maskBits(s string) (int, error) {
	if n, ok := strings.CutPrefix(s, "/"); ok {
		b, err := strconv.Atoi(n)
		if err != nil || b < 0 || b > 32 {
			return 0, fmt.Errorf("%q is not a prefix length", s)
		}
		return b, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() {
		return 0, fmt.Errorf("%q is not a netmask such as 255.255.255.0", s)
	}
	b := a.As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	bits := 0
	for v&(1<<31) != 0 {
		bits++
		v <<= 1
	}
	if v != 0 {
		return 0, fmt.Errorf("%q is not a netmask: its ones are not contiguous", s)
	}
	return bits, nil
}

func checkNetmask(s string) error {
	b, err := maskBits(s)
	if err != nil {
		return err
	}
	if b < 8 || b > 30 {
		return fmt.Errorf("/%d: want a netmask between /8 and /30", b)
	}
	return nil
}

// prefix combines an address and netmask already checked one by one.
func prefix(addr, mask string) (netip.Prefix, error) {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return netip.Prefix{}, err
	}
	b, err := maskBits(mask)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, b), nil
}

func checkZone(s string) error {
	if _, err := time.LoadLocation(s); err != nil || s == "Local" {
		return fmt.Errorf("unknown time zone %q (e.g. UTC, Europe/Paris, America/New_York)", s)
	}
	return nil
}

func checkPassword(s string) error {
	if len(s) < 8 {
		return errors.New("at least 8 characters")
	}
	return nil
}

func checkSSHKey(s string) error {
	if strings.ContainsAny(s, "\n") {
		return errors.New("want one OpenSSH public key line")
	}
	_, err := sshkeys.ParseLine(s)
	return err
}

func checkDevice(s string) error {
	if !strings.HasPrefix(s, "/") {
		return errors.New("want a device path such as /dev/vda")
	}
	return nil
}

// ParseSize reads 512MiB, 20GiB, 1TiB or a number of bytes.
func ParseSize(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"T", 1 << 40}, {"G", 1 << 30}, {"M", 1 << 20}}
	mult := int64(1)
	for _, u := range units {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = strings.TrimSpace(n), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return 0, errors.New("want a size such as 20GiB or 512MiB")
	}
	return n * mult, nil
}

func checkSize(s string) error {
	if s == "rest" {
		return nil
	}
	_, err := ParseSize(s)
	if err != nil {
		return fmt.Errorf("%v, or rest", err)
	}
	return nil
}

func checkRollName(s string) error {
	if !rollRE.MatchString(s) {
		return fmt.Errorf("%q is not a roll name", s)
	}
	return nil
}

const pbkdf2Iter = 210000

// passwordRounds is the SHA-512 crypt round count of HashPassword: about
// the work of the 210,000 PBKDF2 iterations answer files saved before.
const passwordRounds = 100000

// HashPassword hashes an admin password for storage as SHA-512 crypt
// ($6$rounds=N$SALT$HASH): the form /etc/shadow takes, so the installed
// frontend gives root the admin password without ever storing it.
func HashPassword(pw string) (string, error) {
	salt, err := shacrypt.Salt()
	if err != nil {
		return "", err
	}
	return shacrypt.HashWith(pw, salt, passwordRounds)
}

// CheckPassword says whether pw matches a HashPassword hash (or the
// pbkdf2-sha256$ITER$SALT$KEY of older answer files).
func CheckPassword(hash, pw string) bool {
	if strings.HasPrefix(hash, "$6$") {
		return shacrypt.Verify(hash, pw)
	}
	f := strings.Split(hash, "$")
	if len(f) != 4 || f[0] != "pbkdf2-sha256" {
		return false
	}
	iter, err := strconv.Atoi(f[1])
	enc := base64.RawStdEncoding
	salt, err1 := enc.DecodeString(f[2])
	want, err2 := enc.DecodeString(f[3])
	if err != nil || err1 != nil || err2 != nil || iter < 1 {
		return false
	}
	got, err := pbkdf2.Key(sha256.New, pw, salt, iter, len(want))
	return err == nil && subtle.ConstantTimeCompare(got, want) == 1
}

// ShadowHash is hash when /etc/shadow can take it (SHA-512 crypt), else "".
func ShadowHash(hash string) string {
	if shacryptRE.MatchString(hash) {
		return hash
	}
	return ""
}

var shacryptRE = regexp.MustCompile(`^\$6\$(rounds=[0-9]+\$)?[^$:\n]{1,16}\$[./0-9A-Za-z]{86}$`)

func checkPasswordHash(s string) error {
	if ShadowHash(s) != "" {
		return nil
	}
	f := strings.Split(s, "$")
	if len(f) != 4 || f[0] != "pbkdf2-sha256" {
		return errors.New("want $6$rounds=N$SALT$HASH (SHA-512 crypt) as a saved answer file has it")
	}
	return nil
}
