package cluster

import (
	"context"
	"errors"
	"net/netip"
	"strings"
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
			{Network{Mode: "MANAGED", VLANs: [2]int{20, 10}}, false},
			{Network{Mode: "MANAGED", AddrsPerNet: 100}, false},
			{Network{Mode: "MANAGED", Subnet: "10.94.0.0/24", AddrsPerNet: 512}, false},
		} {
			err := r.SetNetwork(ctx, "zone-b", bad.n, reserved)
			if err == nil || bad.overlap != errors.Is(err, controller.ErrSubnetOverlap) {
				t.Errorf("%+v: %v", bad.n, err)
			}
		}
		if c, _ := r.Cluster(ctx, "zone-b"); c.Network != (Network{Mode: nodeapi.ModeManagedNoVLAN}) {
			t.Errorf("refused changes left zone-b at %+v", c.Network)
		}
		// A MANAGED cluster with a live instance keeps its mode, VLANs
		// and slices: its instances sit on them.
		for _, q := range []string{`INSERT INTO reservations (id, account_id, groups, created_at) VALUES ('r-live', 'acct', '[]', 0)`,
			`INSERT INTO instances (id, account_id, reservation_id, launch_index, image_id, vm_type, zone, node_id, mac, state, desired, launch_time)
				VALUES ('i-live', 'acct', 'r-live', 0, 'emi-1', 'm1.small', 'zone-a', 'node-1', 'd0:0d:00:00:00:01', 'running', 'running', 0)`} {
			if _, err := db.Exec(ctx, q); err != nil {
				t.Fatal(err)
			}
		}
		for _, change := range []Network{
			{Mode: nodeapi.ModeManagedNoVLAN, Subnet: "10.91.0.0/24"},
			{Mode: nodeapi.ModeManaged, Subnet: "10.91.0.0/24", VLANs: [2]int{100, 200}},
			{Mode: nodeapi.ModeManaged, Subnet: "10.91.0.0/24", AddrsPerNet: 32},
		} {
			if err := r.SetNetwork(ctx, "zone-a", change, reserved); err == nil || !strings.Contains(err.Error(), "live instances") {
				t.Errorf("%+v with a live instance: %v", change, err)
			}
		}
		if err := r.SetNetwork(ctx, "zone-a", Network{Mode: nodeapi.ModeManaged, Subnet: "10.91.0.0/24"}, reserved); err != nil {
			t.Errorf("turning public IPs off with a live instance: %v", err)
		}
		if _, err := db.Exec(ctx, `UPDATE instances SET state = 'terminated' WHERE id = 'i-live'`); err != nil {
			t.Fatal(err)
		}
		want := Network{Mode: nodeapi.ModeManaged, Subnet: "10.91.0.0/24", VLANs: [2]int{100, 200}, AddrsPerNet: 32}
		if err := r.SetNetwork(ctx, "zone-a", want, reserved); err != nil {
			t.Fatal(err)
		}
		if c, _ := r.Cluster(ctx, "zone-a"); c.Network != want {
			t.Errorf("zone-a network %+v, want %+v", c.Network, want)
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
