package cluster

import (
	"context"
	"errors"
	"net/netip"
	"testing"

	"ironbark/controller"
	"ironbark/internal/nodeapi"
	"ironbark/internal/store"
	"ironbark/internal/store/storetest"
)

// TestClusterNetwork: a cluster's mode, subnet and public-IP setting are
// kept; an overlapping or invalid subnet is refused and changes nothing.
func TestClusterNetwork(t *testing.T) {
	storetest.Each(t, controller.Migrations(), func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		r, err := NewRegistry(ctx, db)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range []string{"zone-a", "zone-b"} {
			if err := r.AddCluster(ctx, n, "GREEDY"); err != nil {
				t.Fatal(err)
			}
		}
		reserved := controller.Settings{}.ReservedSubnets()
		if err := r.SetNetwork(ctx, "zone-a", Network{Mode: "managed", Subnet: "10.91.0.0/24", PublicIPs: true}, reserved); err != nil {
			t.Fatal(err)
		}
		c, err := r.Cluster(ctx, "zone-a")
		if err != nil {
			t.Fatal(err)
		}
		if want := (Network{Mode: nodeapi.ModeManaged, Subnet: "10.91.0.0/24", PublicIPs: true}); c.Network != want {
			t.Fatalf("zone-a network %+v, want %+v", c.Network, want)
		}
		for _, bad := range []struct {
			n       Network
			overlap bool
		}{
			{Network{Subnet: "10.91.0.128/25"}, true},
			{Network{Subnet: "10.88.7.0/24"}, true}, // inside the cloud's default
			{Network{Subnet: "10.93.0.1/24"}, false},
			{Network{Mode: "VLAN"}, false},
		} {
			err := r.SetNetwork(ctx, "zone-b", bad.n, reserved)
			if err == nil || bad.overlap != errors.Is(err, controller.ErrSubnetOverlap) {
				t.Errorf("%+v: %v", bad.n, err)
			}
		}
		if c, _ := r.Cluster(ctx, "zone-b"); c.Network != (Network{Mode: nodeapi.ModeManagedNoVLAN}) {
			t.Errorf("refused changes left zone-b at %+v", c.Network)
		}
		if err := r.SetNetwork(ctx, "nowhere", Network{}, reserved); !errors.Is(err, ErrNoSuchCluster) {
			t.Errorf("unknown cluster: %v", err)
		}
	})
}

func TestNextSubnet(t *testing.T) {
	base := netip.MustParsePrefix("10.88.0.0/16")
	used := []netip.Prefix{base, netip.MustParsePrefix("10.89.0.0/16"), netip.MustParsePrefix("10.90.4.0/24")}
	if p, ok := NextSubnet(base, used); !ok || p.String() != "10.91.0.0/16" {
		t.Fatalf("next after %v: %v %v", used, p, ok)
	}
	if _, ok := NextSubnet(netip.MustParsePrefix("10.255.0.0/16"), nil); ok {
		t.Fatal("a subnet past 10.255.255.255")
	}
}
