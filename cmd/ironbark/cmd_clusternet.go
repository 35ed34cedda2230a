package main

import (
	"context"
	"flag"
	"fmt"
	"net/netip"
	"strings"

	"ironbark/controller"
	"ironbark/controller/cluster"
	"ironbark/internal/nodeapi"
)

// clusterNetFlags are the networking flags of cluster add and cluster set.
type clusterNetFlags struct {
	mode, subnet, publicIPs *string
}

func addClusterNetFlags(fs *flag.FlagSet) clusterNetFlags {
	return clusterNetFlags{
		mode: fs.String("network-mode", "", "networking mode: "+strings.Join(nodeapi.Modes(), ", ")+
			" (add: "+nodeapi.ModeManagedNoVLAN+")"),
		subnet: fs.String("instance-subnet", "", "the cluster's own private instance subnet, an IPv4 CIDR "+
			"(add: the cloud's instanceSubnet for the first cluster, the next free one of its size for the others)"),
		publicIPs: fs.String("public-ips", "", "give every launch a public address from the pool: on or off (add: off)"),
	}
}

// apply sets the cluster's networking from the flags over what it has.
func (f clusterNetFlags) apply(ctx context.Context, e *env, name string, adding bool) (cluster.Network, error) {
	reg, err := e.openNetRegistry(ctx)
	if err != nil {
		return cluster.Network{}, err
	}
	c, err := reg.Cluster(ctx, name)
	if err != nil {
		return cluster.Network{}, err
	}
	settings, err := controller.LoadSettings(e.dataDir)
	if err != nil {
		return cluster.Network{}, err
	}
	reserved := settings.ReservedSubnets()
	n := c.Network
	if *f.mode != "" {
		if n.Mode, err = cluster.CheckMode(*f.mode); err != nil {
			return n, e.usagef("%v", err)
		}
	}
	switch *f.publicIPs {
	case "":
	case "on", "true", "yes":
		n.PublicIPs = true
	case "off", "false", "no":
		n.PublicIPs = false
	default:
		return n, e.usagef("--public-ips %q: want on or off", *f.publicIPs)
	}
	n.Subnet = *f.subnet
	if adding && n.Subnet == "" && settings.ClusterSubnets[name] == "" {
		// The first cluster takes the cloud's default subnet; each
		// later one gets its own, the next free block of that size.
		all, err := reg.Clusters(ctx)
		if err != nil {
			return n, err
		}
		if len(all) > 1 {
			def := netip.MustParsePrefix(reserved["instanceSubnet (controller.json)"])
			used := []netip.Prefix{def}
			for _, s := range reserved {
				if p, err := netip.ParsePrefix(s); err == nil {
					used = append(used, p)
				}
			}
			for _, o := range all {
				if p, err := netip.ParsePrefix(o.Network.Subnet); err == nil {
					used = append(used, p)
				}
			}
			p, ok := cluster.NextSubnet(def, used)
			if !ok {
				return n, fmt.Errorf("no free instance subnet of %s's size left for cluster %s: give one with --instance-subnet", def, name)
			}
			n.Subnet = p.String()
		}
	}
	if n.Subnet != "" {
		delete(reserved, "cluster "+name)
	}
	if err := reg.SetNetwork(ctx, name, n, reserved); err != nil {
		return n, err
	}
	c, err = reg.Cluster(ctx, name)
	if err != nil {
		return n, err
	}
	return c.Network, nil
}

// openNetRegistry opens the registry on a store that has the EC2 side's
// tables too: a subnet change checks the cluster's live instances.
func (e *env) openNetRegistry(ctx context.Context) (*cluster.Registry, error) {
	db, err := e.openStore(ctx, controller.Migrations())
	if err != nil {
		return nil, err
	}
	return cluster.NewRegistry(ctx, db)
}

// subnetOf is what cluster list shows as a cluster's subnet.
func subnetOf(n cluster.Network, s controller.Settings, name string) string {
	switch {
	case n.Subnet != "":
		return n.Subnet
	case s.ClusterSubnets[name] != "":
		return s.ClusterSubnets[name]
	}
	return s.ReservedSubnets()["instanceSubnet (controller.json)"]
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

func clusterSet(fs *flag.FlagSet) runFunc {
	f := addClusterNetFlags(fs)
	return func(ctx context.Context, e *env) error {
		if *f.mode == "" && *f.subnet == "" && *f.publicIPs == "" {
			return e.usagef("cluster set: give --network-mode, --instance-subnet or --public-ips")
		}
		n, err := f.apply(ctx, e, e.args[0], false)
		if err != nil {
			return err
		}
		e.say("cluster %s: network %s, instance subnet %s, public IPs at launch %s", e.args[0], n.Mode, orDefault(n.Subnet), onOff(n.PublicIPs))
		return nil
	}
}

func orDefault(s string) string {
	if s == "" {
		return "(the cloud's instanceSubnet)"
	}
	return s
}
