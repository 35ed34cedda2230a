package nodeagent

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
)

// ConsoleTailSize is how much of the serial console is reported, as EC2's
// GetConsoleOutput returns.
const ConsoleTailSize = 64 << 10

// consoleTail reads the last 64 KiB of a console log and its hash.
func consoleTail(path string) ([]byte, string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, "", err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, "", err
	}
	off := max(fi.Size()-ConsoleTailSize, 0)
	b := make([]byte, fi.Size()-off)
	if _, err := f.ReadAt(b, off); err != nil && err != io.EOF {
		return nil, "", err
	}
	sum := sha256.Sum256(b)
	return b, hex.EncodeToString(sum[:]), nil
}
