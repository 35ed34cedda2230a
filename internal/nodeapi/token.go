package nodeapi

import (
	"encoding/hex"
	"errors"
	"strings"
)

// TokenPrefix starts every v1 enrollment token. A token reads
// "ibt1.<secret>.<ca-fingerprint>": the secret is spent by one enrollment
// (the controller keeps only its hash); the fingerprint (hex SHA-256 of the
// CA's SubjectPublicKeyInfo) lets the node check the controller before it
// holds the CA certificate.
const TokenPrefix = "ibt1"

// ParseToken splits an enrollment token into its secret and CA fingerprint.
func ParseToken(tok string) (secret, caFingerprint string, err error) {
	parts := strings.Split(strings.TrimSpace(tok), ".")
	if len(parts) != 3 || parts[0] != TokenPrefix || parts[1] == "" || len(parts[2]) != 64 {
		return "", "", errors.New("malformed enrollment token (want ibt1.<secret>.<fingerprint>)")
	}
	if _, err := hex.DecodeString(parts[2]); err != nil {
		return "", "", errors.New("malformed enrollment token fingerprint")
	}
	return parts[1], strings.ToLower(parts[2]), nil
}
