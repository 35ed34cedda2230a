package nodeagent

import (
	"bufio"
	"fmt"
	"io"
	"strings"
)

// ParseConfigFile reads the node config file the installer writes: one
// "key = value" per line (keys are ironbark-node's flag names, e.g.
// controller, token, libvirt, state-dir, bridge), '#' starts a comment,
// values may be double-quoted.
func ParseConfigFile(r io.Reader) (map[string]string, error) {
	out := map[string]string{}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("line %d: want key = value", n)
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
			v = v[1 : len(v)-1]
		}
		if k == "" {
			return nil, fmt.Errorf("line %d: empty key", n)
		}
		out[k] = v
	}
	return out, sc.Err()
}
