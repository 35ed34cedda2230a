package main

import (
	"context"
	"flag"
	"fmt"
	"strings"

	"ironbark/controller/cluster"
	"ironbark/internal/nodeapi"
)

// nodeCapCommands are the capacity review commands: a node counts what it
// declares only within its cluster's limit and what an operator approved.
func nodeCapCommands() []command {
	return []command{
		{name: "node approve", summary: "accept what a new or changed node declares (within its cluster's limit): node approve NODE-ID", run: runNodeApprove},
		{name: "cluster set-limit", summary: "bound what one node may offer: cluster set-limit NAME [--max-cores N] [--max-memory-mib N] [--max-disk-gib N]", run: runClusterSetLimit},
	}
}

// review is node list's REVIEW column: new nodes and nodes that declare
// more than was approved stand out.
func review(n cluster.Node) string {
	var parts []string
	if !n.Reviewed {
		parts = append(parts, "new")
	}
	d, a := n.Declared, n.Approved
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

func runNodeApprove(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("node approve", flag.ContinueOnError)
	var rf storeFlags
	rf.add(fs)
	pos, err := parseArgs(fs, args, 1, "usage: ironbark node approve NODE-ID [--data-dir DIR]")
	if err != nil {
		return err
	}
	reg, db, err := rf.openRegistry(ctx)
	if err != nil {
		return err
	}
	defer db.Close()
	n, err := reg.ApproveNode(ctx, pos[0])
	if err != nil {
		return err
	}
	fmt.Printf("node %s (%s) approved: %d cores, %d MiB, %d GiB\n", n.ID, n.Hostname, n.Capacity.Cores, n.Capacity.MemoryMiB, n.Capacity.DiskGiB)
	return nil
}

func runClusterSetLimit(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("cluster set-limit", flag.ContinueOnError)
	var rf storeFlags
	rf.add(fs)
	var l nodeapi.Capacity
	fs.IntVar(&l.Cores, "max-cores", 0, fmt.Sprintf("most cores one node may offer (0: %d)", cluster.DefaultNodeLimit.Cores))
	fs.IntVar(&l.MemoryMiB, "max-memory-mib", 0, fmt.Sprintf("most memory one node may offer, MiB (0: %d)", cluster.DefaultNodeLimit.MemoryMiB))
	fs.IntVar(&l.DiskGiB, "max-disk-gib", 0, fmt.Sprintf("most disk one node may offer, GiB (0: %d)", cluster.DefaultNodeLimit.DiskGiB))
	pos, err := parseArgs(fs, args, 1, "usage: ironbark cluster set-limit NAME [--max-cores N] [--max-memory-mib N] [--max-disk-gib N] [--data-dir DIR]")
	if err != nil {
		return err
	}
	reg, db, err := rf.openRegistry(ctx)
	if err != nil {
		return err
	}
	defer db.Close()
	if err := reg.SetNodeLimit(ctx, pos[0], l); err != nil {
		return err
	}
	lim := cluster.Cluster{NodeLimit: l}.Limit()
	fmt.Printf("cluster %s: a node offers at most %d cores, %d MiB, %d GiB\n", pos[0], lim.Cores, lim.MemoryMiB, lim.DiskGiB)
	return nil
}
