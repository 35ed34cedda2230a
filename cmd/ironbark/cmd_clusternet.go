package main

import (
	"context"
	"flag"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"ironbark/controller"
	"ironbark/controller/cluster"
	"ironbark/internal/nodeapi"
)

// clusterNetFlags are the networking flags of cluster add and cluster set.
type clusterNetFlags struct {
	mode, subnet, publicIPs, vlans, addrsPerNet *string
}

func addClusterNetFlags(fs *flag.FlagSet) clusterNetFlags {
	return clusterNetFlags{
		mode: fs.String("network-mode", "", "networking mode: "+strings.Join(nodeapi.Modes(), ", ")+
			" (add: "+nodeapi.ModeManagedNoVLAN+")"),
		subnet: fs.String("instance-subnet", "", "the cluster's own private instance subnet, an IPv4 CIDR "+
			"(add: the cloud's instanceSubnet for the first cluster, the next free one of its size for the others)"),
		publicIPs: fs.String("public-ips", "", "give every launch a public address from the pool: on or off (add: off)"),
		vlans: fs.String("vlans", "", fmt.Sprintf("MANAGED mode: the VLAN ids the cluster's security groups take, one each, LOW-HIGH (add: %d-%d)",
			controller.DefaultVLANs[0], controller.DefaultVLANs[1])),
		addrsPerNet: fs.String("addrs-per-net", "", "MANAGED mode: addresses in each security group's slice of the instance subnet, "+
			"a power of two, or auto (add: auto: 256, at most a sixteenth of the subnet)"),
	}
}

// parseVLANs reads --vlans' LOW-HIGH.
func parseVLANs(s string) ([2]int, error) {
	lo, hi, ok := strings.Cut(s, "-")
	var r [2]int
	var err1, err2 error
	r[0], err1 = strconv.Atoi(strings.TrimSpace(lo))
	r[1], err2 = strconv.Atoi(strings.TrimSpace(hi))
	if !ok || err1 != nil || err2 != nil {
		return r, fmt.Errorf("--vlans %q: want LOW-HIGH, e.g. 10-4094", s)
	}
	return r, controller.CheckVLANs(r, 0)
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
	if *f.vlans != "" {
		if n.VLANs, err = parseVLANs(*f.vlans); err != nil {
			return n, e.usagef("%v", err)
		}
	}
	switch *f.addrsPerNet {
	case "":
	case "auto":
		n.AddrsPerNet = 0
	default:
		a, err := strconv.Atoi(*f.addrsPerNet)
		if err == nil {
			err = controller.CheckVLANs([2]int{}, a)
		}
		if err != nil || a == 0 {
			return n, e.usagef("--addrs-per-net %q: want a power of two, 16 or more, or auto", *f.addrsPerNet)
		}
		n.AddrsPerNet = a
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
		if *f.mode == "" && *f.subnet == "" && *f.publicIPs == "" && *f.vlans == "" && *f.addrsPerNet == "" {
			return e.usagef("cluster set: give --network-mode, --instance-subnet, --public-ips, --vlans or --addrs-per-net")
		}
		n, err := f.apply(ctx, e, e.args[0], false)
		if err != nil {
			return err
		}
		e.say("cluster %s: network %s, instance subnet %s, public IPs at launch %s", e.args[0], modeOf(n), orDefault(n.Subnet), onOff(n.PublicIPs))
		return nil
	}
}

func orDefault(s string) string {
	if s == "" {
		return "(the cloud's instanceSubnet)"
	}
	return s
}

// modeOf is a cluster's networking mode as cluster add and set say it:
// MANAGED with its VLANs and addresses per group.
func modeOf(n cluster.Network) string {
	if n.Mode != nodeapi.ModeManaged {
		return n.Mode
	}
	v := n.VLANs
	if v == [2]int{} {
		v = controller.DefaultVLANs
	}
	per := "auto"
	if n.AddrsPerNet > 0 {
		per = strconv.Itoa(n.AddrsPerNet)
	}
	return fmt.Sprintf("MANAGED (VLANs %d-%d, addresses per group %s)", v[0], v[1], per)
}

// groupNetsOf is what cluster list shows of a MANAGED cluster's group
// networks: its VLAN range and the addresses of each group's slice.
func groupNetsOf(n cluster.Network, subnet string) (*[2]int, int) {
	v := n.VLANs
	if v == [2]int{} {
		v = controller.DefaultVLANs
	}
	p, err := netip.ParsePrefix(subnet)
	if err != nil {
		return &v, n.AddrsPerNet
	}
	return &v, 1 << (32 - controller.GroupNetBits(p, n.AddrsPerNet))
}
