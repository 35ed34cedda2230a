package main

import (
	"context"
	"flag"
	"fmt"
	"strings"

	"ironbark/controller/cluster"
	"ironbark/internal/nodeapi"
)

// review is node list's REVIEW column: new nodes, nodes whose capacity is
// not known yet, and nodes that declare more than was approved stand out.
func review(n cluster.Node) string {
	var parts []string
	if !n.Reviewed {
		parts = append(parts, "new")
	}
	d, a := n.Declared, n.Approved
	if !cluster.Known(d) {
		// Its hypervisor has not reported the host's cores and memory.
		parts = append(parts, "capacity unknown")
	}
	for _, f := range []struct {
		what           string
		declared, appr int
	}{{"cores", d.Cores, a.Cores}, {"memory", d.MemoryMiB, a.MemoryMiB}, {"disk", d.DiskGiB, a.DiskGiB}} {
		if f.declared > f.appr {
			parts = append(parts, fmt.Sprintf("declares %s %d>%d", f.what, f.declared, f.appr))
		}
	}
	if len(parts) == 0 {
		return "ok"
	}
	return strings.Join(parts, ", ")
}

func nodeApprove(fs *flag.FlagSet) runFunc {
	return func(ctx context.Context, e *env) error {
		reg, err := e.openRegistry(ctx)
		if err != nil {
			return err
		}
		n, err := reg.ApproveNode(ctx, e.args[0])
		if err != nil {
			return err
		}
		e.say("node %s (%s) approved: %d cores, %d MiB, %d GiB", n.ID, n.Hostname, n.Capacity.Cores, n.Capacity.MemoryMiB, n.Capacity.DiskGiB)
		return nil
	}
}

func clusterSetLimit(fs *flag.FlagSet) runFunc {
	var l nodeapi.Capacity
	fs.IntVar(&l.Cores, "max-cores", 0, fmt.Sprintf("most cores one node may offer (0: %d)", cluster.DefaultNodeLimit.Cores))
	fs.IntVar(&l.MemoryMiB, "max-memory-mib", 0, fmt.Sprintf("most memory one node may offer, MiB (0: %d)", cluster.DefaultNodeLimit.MemoryMiB))
	fs.IntVar(&l.DiskGiB, "max-disk-gib", 0, fmt.Sprintf("most disk one node may offer, GiB (0: %d)", cluster.DefaultNodeLimit.DiskGiB))
	return func(ctx context.Context, e *env) error {
		reg, err := e.openRegistry(ctx)
		if err != nil {
			return err
		}
		if err := reg.SetNodeLimit(ctx, e.args[0], l); err != nil {
			return err
		}
		lim := cluster.Cluster{NodeLimit: l}.Limit()
		e.say("cluster %s: a node offers at most %d cores, %d MiB, %d GiB", e.args[0], lim.Cores, lim.MemoryMiB, lim.DiskGiB)
		return nil
	}
}
