package controller

import (
	"crypto/rand"
	"encoding/hex"
	"math/big"
	"strings"
)

// newID makes an EC2-style resource id: prefix, dash and n lowercase hex
// digits (17 like AWS's long ids; 8 for images, as Eucalyptus' emi-).
func newID(prefix string, n int) string {
	b := make([]byte, (n+1)/2)
	_, _ = rand.Read(b)
	return prefix + "-" + hex.EncodeToString(b)[:n]
}

// randomString draws n characters from alphabet with crypto/rand.
func randomString(alphabet string, n int) string {
	var b strings.Builder
	max := big.NewInt(int64(len(alphabet)))
	for range n {
		i, _ := rand.Int(rand.Reader, max)
		b.WriteByte(alphabet[i.Int64()])
	}
	return b.String()
}

const (
	digits        = "0123456789"
	upperBase32   = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
	secretLetters = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
)

// newAccountID is 12 digits without a leading zero.
func newAccountID() string {
	return randomString("123456789", 1) + randomString(digits, 11)
}

// newAccessKey is AKIA plus 16 base32 characters, as AWS's keys look.
func newAccessKey() string { return "AKIA" + randomString(upperBase32, 16) }

// newSecretKey is 40 characters; letters and digits only, so the eucarc
// needs no quoting.
func newSecretKey() string { return randomString(secretLetters, 40) }

// newMAC is a locally administered unicast address under Eucalyptus'
// d0:0d prefix.
func newMAC() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return "d0:0d:" + hex.EncodeToString(b[0:1]) + ":" + hex.EncodeToString(b[1:2]) + ":" +
		hex.EncodeToString(b[2:3]) + ":" + hex.EncodeToString(b[3:4])
}
