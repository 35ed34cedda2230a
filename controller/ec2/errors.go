package ec2

import (
	"errors"
	"fmt"
)

func sprintf(format string, args ...any) string {
	if len(args) == 0 {
		return format
	}
	return fmt.Sprintf(format, args...)
}

// ErrUnknownAccessKey is what a CredentialStore returns for a key it does
// not hold; the wire layer answers AuthFailure.
var ErrUnknownAccessKey = errors.New("unknown access key")
