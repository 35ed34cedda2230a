package scale

import (
	"os"
	"testing"
)

var tempDirs []string

// mkdirTemp makes a directory that lives until the test binary ends
// (the ironbark binary built once for every test).
func mkdirTemp() (string, error) {
	d, err := os.MkdirTemp("", "scale-test-")
	if err == nil {
		tempDirs = append(tempDirs, d)
	}
	return d, err
}

func TestMain(m *testing.M) {
	code := m.Run()
	for _, d := range tempDirs {
		os.RemoveAll(d)
	}
	os.Exit(code)
}
