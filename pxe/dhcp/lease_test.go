package dhcp

import (
	"net/netip"
	"testing"
)

func TestPoolFor(t *testing.T) {
	p, err := PoolFor(netip.MustParsePrefix("10.1.0.1/24"))
	if err != nil || p.Start.String() != "10.1.0.128" || p.End.String() != "10.1.0.254" || p.Size() != 127 {
		t.Fatalf("PoolFor: %+v %v", p, err)
	}
	if _, err := PoolFor(netip.MustParsePrefix("10.1.0.1/31")); err == nil {
		t.Fatal("PoolFor /31 should fail")
	}
	if got := p.Nth(0); got != p.Start {
		t.Errorf("Nth(0) = %s", got)
	}
	if got := p.Nth(p.Size() - 1); got != p.End {
		t.Errorf("Nth(last) = %s", got)
	}
}
