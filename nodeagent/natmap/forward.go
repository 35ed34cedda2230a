package natmap

import (
	"fmt"
	"os"
)

// forward turns on IPv4 forwarding where elastic IPs need it, which a
// node's OS leaves off by default (Debian does): on the public interface,
// where traffic to a public address arrives and is routed on to its
// instance, and on the instance bridge, where the instances' answers and
// outbound traffic arrive and are routed out. The kernel checks the
// arriving interface's own setting, so the node's other interfaces keep
// theirs. Without a public interface the network routes the pool to the
// node on an interface not named here, so forwarding goes on for all of
// them. It is never turned back off: something else on the node may have
// wanted it first.
func (t *Table) forward() error {
	ifs := []string{"all"}
	if t.cfg.PublicInterface != "" {
		ifs = []string{t.cfg.PublicInterface}
	}
	if t.cfg.Bridge != "" {
		ifs = append(ifs, t.cfg.Bridge)
	}
	ifs = append(ifs, t.bridges...)
	// /proc/sys/net is the opening thread's namespace's.
	return inNetNS(t.cfg.NetNS, func() error {
		for _, i := range ifs {
			knob := "/proc/sys/net/ipv4/conf/" + i + "/forwarding"
			if err := os.WriteFile(knob, []byte("1\n"), 0o644); err != nil {
				return fmt.Errorf("natmap: turn on forwarding for %s: %w", i, err)
			}
		}
		return nil
	})
}
