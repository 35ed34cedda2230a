package natmap_test

import (
	"net/netip"
	"strings"
	"testing"

	"ironbark/nodeagent/natmap"
	"ironbark/nodeagent/natmap/natmaptest"
)

func mustTable(t *testing.T, n *natmaptest.Node) *natmap.Table {
	t.Helper()
	tb, err := natmap.New(natmap.Config{NetNS: n.NetNSFd(), PublicInterface: n.Public, Bridge: n.Bridge})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tb.Close)
	return tb
}

func m(pub string, in *natmaptest.Instance) natmap.Mapping {
	return natmap.Mapping{Public: netip.MustParseAddr(pub), Private: in.IP}
}

func apply(t *testing.T, tb *natmap.Table, n *natmaptest.Node, ms ...natmap.Mapping) {
	t.Helper()
	if err := tb.Apply(ms, []netip.Prefix{n.Subnet}); err != nil {
		t.Fatal(err)
	}
}

// TestElasticIPs: two nodes of two clusters behind one public network, in
// namespaces, with the real kernel's nftables. An elastic IP reaches its
// instance from outside and follows it when reassociated, on the same node
// and to the other; the clusters' private subnets do not see each other,
// only each other's public addresses; a restarted agent rebuilds the same
// ruleset; bad mappings change nothing. Forwarding is off on the nodes
// until their first elastic IP turns it on (Debian's default, and a fresh
// namespace's).
func TestElasticIPs(t *testing.T) {
	w := natmaptest.NewWorld(t, "198.51.100.1/24")
	a := w.AddNode(t, "198.51.100.2", "10.91.0.0/24")
	b := w.AddNode(t, "198.51.100.3", "10.92.0.0/24")
	a1 := a.AddInstance(t, "a1", "10.91.0.10")
	a2 := a.AddInstance(t, "a2", "10.91.0.11")
	b1 := b.AddInstance(t, "b1", "10.92.0.10")
	ta, tb := mustTable(t, a), mustTable(t, b)
	const eip, eip2 = "198.51.100.20", "198.51.100.21"
	apply(t, tb, b)

	natmaptest.MustNotReach(t, w.Out, eip)
	// The nodes forward nothing until they have elastic IPs (the kernel's
	// default), then only from their public interface and their bridge.
	forwarding := func(n *natmaptest.Node, want string) {
		t.Helper()
		for _, i := range []string{n.Public, n.Bridge} {
			if got := n.Forwarding(t, i); got != want {
				t.Fatalf("forwarding on %s: %s, want %s", i, got, want)
			}
		}
		if got := n.Forwarding(t, "all"); got != "0" {
			t.Fatalf("forwarding for all the interfaces: %s, want 0 (only the public one and the bridge)", got)
		}
	}
	forwarding(a, "0")
	forwarding(b, "0")
	apply(t, ta, a, m(eip, a1))
	forwarding(a, "1")
	natmaptest.MustReach(t, w.Out, eip, "a1 198.51.100.1")

	// Reassociated to another instance of the node.
	apply(t, ta, a, m(eip, a2))
	natmaptest.MustReach(t, w.Out, eip, "a2 198.51.100.1")

	// An instance reaches another of its node through the public address.
	natmaptest.MustReach(t, a1.NS, eip, "a2 10.91.0.1")

	// Moved to the other node (the gratuitous ARP updates the outside).
	apply(t, ta, a)
	apply(t, tb, b, m(eip, b1))
	natmaptest.MustReach(t, w.Out, eip, "b1 198.51.100.1")

	// The clusters' subnets do not reach each other; their public
	// addresses do, and the caller shows as its own public address.
	natmaptest.MustNotReach(t, a1.NS, b1.IP.String())
	natmaptest.MustNotReach(t, b1.NS, a1.IP.String())
	apply(t, ta, a, m(eip2, a1))
	natmaptest.MustReach(t, a1.NS, eip, "b1 "+eip2)
	natmaptest.MustReach(t, b1.NS, eip2, "a1 "+eip)

	// A restarted agent: a new table over the old rules, the same state,
	// the same ruleset; the old rules worked until then.
	before := a.Ruleset(t)
	for _, want := range []string{"table ip ironbark-nat", "ip daddr 198.51.100.21 dnat to 10.91.0.10", "ip saddr 10.91.0.10 snat to 198.51.100.21"} {
		if !strings.Contains(before, want) {
			t.Errorf("ruleset lacks %q:\n%s", want, before)
		}
	}
	ta.Close()
	natmaptest.MustReach(t, w.Out, eip2, "a1 198.51.100.1")
	ta = mustTable(t, a)
	apply(t, ta, a, m(eip2, a1))
	if after := a.Ruleset(t); after != before {
		t.Errorf("ruleset changed across a restart:\n--- before\n%s--- after\n%s", before, after)
	}
	natmaptest.MustReach(t, w.Out, eip2, "a1 198.51.100.1")

	// Bad input changes nothing.
	for name, ms := range map[string][]natmap.Mapping{
		"public twice": {m(eip2, a1), m(eip2, a2)},
		"two for one":  {m(eip2, a1), m("198.51.100.22", a1)},
		"not IPv4":     {{Public: netip.MustParseAddr("2001:db8::1"), Private: a1.IP}},
	} {
		if err := ta.Apply(ms, []netip.Prefix{a.Subnet}); err == nil {
			t.Errorf("%s: applied", name)
		}
	}
	if after := a.Ruleset(t); after != before {
		t.Errorf("bad input changed the ruleset:\n%s", after)
	}
	natmaptest.MustReach(t, w.Out, eip2, "a1 198.51.100.1")
}
