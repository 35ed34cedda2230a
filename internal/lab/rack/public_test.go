package rack

import (
	"net/netip"
	"strings"
	"testing"
)

// The public network must be one this machine does not reach otherwise:
// on a machine whose own network is 192.0.2.0/24 (as here) the rack takes
// the next documentation network, and says so when all are used.
func TestChoosePublic(t *testing.T) {
	pp := func(ss ...string) []netip.Prefix {
		var out []netip.Prefix
		for _, s := range ss {
			out = append(out, netip.MustParsePrefix(s))
		}
		return out
	}
	for _, c := range []struct {
		nets []netip.Prefix
		want string
	}{
		{pp("10.0.0.0/8", "127.0.0.0/8"), "192.0.2.1/24"},
		{pp("192.0.2.0/24"), "198.51.100.1/24"},
		{pp("192.0.2.128/25", "198.51.0.0/16"), "203.0.113.1/24"},
		{pp("192.0.0.0/8", "198.51.100.7/32", "203.0.113.0/24"), ""},
	} {
		got, err := choosePublic(c.nets)
		if c.want == "" {
			if err == nil || !strings.Contains(err.Error(), "--public") {
				t.Errorf("%v: %v %v, want an error naming --public", c.nets, got, err)
			}
			continue
		}
		if err != nil || got.String() != c.want {
			t.Errorf("%v: %v %v, want %s", c.nets, got, err, c.want)
		}
	}
	if n, ok := overlap(netip.MustParsePrefix("192.0.2.1/24"), pp("10.0.0.0/8", "192.0.2.0/24")); !ok || n.String() != "192.0.2.0/24" {
		t.Errorf("overlap: %v %v", n, ok)
	}
	// This machine's own networks are read (at least loopback's).
	nets, err := hostNets()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := overlap(netip.MustParsePrefix("127.0.0.1/32"), nets); !ok {
		t.Errorf("hostNets %v lacks loopback", nets)
	}
}
