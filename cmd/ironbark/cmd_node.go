package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"ironbark/controller/cluster"
	"ironbark/controller/sched"
	"ironbark/internal/pki"
	"ironbark/internal/store"
)

// nodeCommands lists the cluster and node subcommands.
func nodeCommands() []command {
	return []command{
		{name: "cluster add", summary: "add a cluster (availability zone): cluster add NAME [--policy GREEDY|ROUNDROBIN|POWERSAVE]", run: runClusterAdd},
		{name: "cluster list", summary: "list clusters with their policy and nodes", run: runClusterList},
		{name: "cluster set-policy", summary: "change a cluster's scheduling policy: cluster set-policy NAME POLICY", run: runClusterSetPolicy},
		{name: "node token", summary: "print a one-time enrollment token for ironbark-node: node token --cluster NAME", run: runNodeToken},
		{name: "node list", summary: "list enrolled nodes with capacity and last heartbeat", run: runNodeList},
		{name: "node remove", summary: "forget a node and revoke its certificate: node remove NODE-ID", run: runNodeRemove},
	}
}

// openRegistry opens the store and the cluster registry on it.
func (f *storeFlags) openRegistry(ctx context.Context) (*cluster.Registry, *store.DB, error) {
	db, err := f.openStore(ctx, nil)
	if err != nil {
		return nil, nil, err
	}
	reg, err := cluster.NewRegistry(ctx, db)
	if err != nil {
		db.Close()
		return nil, nil, err
	}
	return reg, db, nil
}

// parseArgs is parseWithArgs for commands that take exactly n positional
// arguments; usage is the error otherwise.
func parseArgs(fs *flag.FlagSet, args []string, n int, usage string) ([]string, error) {
	pos, err := parseWithArgs(fs, args)
	if err == nil && len(pos) != n {
		err = errors.New(usage)
	}
	return pos, err
}

// parseWithArgs parses flags that may come before, between or after the
// positional arguments, and returns the positional ones.
func parseWithArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func runClusterAdd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("cluster add", flag.ContinueOnError)
	var rf storeFlags
	rf.add(fs)
	policy := fs.String("policy", sched.Greedy, "scheduling policy: "+strings.Join(sched.Policies(), ", "))
	pos, err := parseArgs(fs, args, 1, "usage: ironbark cluster add NAME [--policy P] [--data-dir DIR]")
	if err != nil {
		return err
	}
	p, err := sched.New(*policy)
	if err != nil {
		return err
	}
	reg, db, err := rf.openRegistry(ctx)
	if err != nil {
		return err
	}
	defer db.Close()
	if err := reg.AddCluster(ctx, pos[0], p.Name()); err != nil {
		return err
	}
	fmt.Printf("cluster %s added (policy %s)\n", pos[0], p.Name())
	return nil
}

func runClusterSetPolicy(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("cluster set-policy", flag.ContinueOnError)
	var rf storeFlags
	rf.add(fs)
	pos, err := parseArgs(fs, args, 2, "usage: ironbark cluster set-policy NAME POLICY [--data-dir DIR]")
	if err != nil {
		return err
	}
	p, err := sched.New(pos[1])
	if err != nil {
		return err
	}
	reg, db, err := rf.openRegistry(ctx)
	if err != nil {
		return err
	}
	defer db.Close()
	if err := reg.SetPolicy(ctx, pos[0], p.Name()); err != nil {
		return err
	}
	fmt.Printf("cluster %s: policy %s\n", pos[0], p.Name())
	return nil
}

func runClusterList(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("cluster list", flag.ContinueOnError)
	var rf storeFlags
	rf.add(fs)
	if _, err := parseArgs(fs, args, 0, "usage: ironbark "+fs.Name()+" [flags]: no arguments"); err != nil {
		return err
	}
	reg, db, err := rf.openRegistry(ctx)
	if err != nil {
		return err
	}
	defer db.Close()
	cs, err := reg.Clusters(ctx)
	if err != nil {
		return err
	}
	nodes, err := reg.Nodes(ctx, "")
	if err != nil {
		return err
	}
	up, total := map[string]int{}, map[string]int{}
	for _, n := range nodes {
		total[n.Cluster]++
		if n.Live(time.Now(), cluster.DefaultHeartbeatTimeout) {
			up[n.Cluster]++
		}
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CLUSTER\tPOLICY\tNODES UP\tNODES\tCREATED")
	for _, c := range cs {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\n", c.Name, c.Policy, up[c.Name], total[c.Name], c.Created.Format(time.RFC3339))
	}
	return tw.Flush()
}

func runNodeToken(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("node token", flag.ContinueOnError)
	var rf storeFlags
	rf.add(fs)
	name := fs.String("cluster", "", "cluster the node joins (required)")
	ttl := fs.Duration("ttl", cluster.DefaultTokenTTL, "how long the token stays valid")
	if _, err := parseArgs(fs, args, 0, "usage: ironbark "+fs.Name()+" [flags]: no arguments"); err != nil {
		return err
	}
	if *name == "" {
		return errors.New("usage: ironbark node token --cluster NAME [--ttl 24h] [--data-dir DIR]")
	}
	reg, db, err := rf.openRegistry(ctx)
	if err != nil {
		return err
	}
	defer db.Close()
	ca, err := pki.LoadOrCreateCA(cluster.PKIDir(rf.dataDir))
	if err != nil {
		return err
	}
	tok, err := reg.NewToken(ctx, ca, *name, *ttl)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stdout, "# one-time enrollment token for cluster %s, valid until %s:\n# ironbark-node --controller https://FRONTEND:8774 --token TOKEN --state-dir /var/lib/ironbark-node\n%s\n",
		*name, time.Now().Add(*ttl).UTC().Format(time.RFC3339), tok)
	return nil
}

func runNodeList(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("node list", flag.ContinueOnError)
	var rf storeFlags
	rf.add(fs)
	name := fs.String("cluster", "", "only this cluster's nodes")
	if _, err := parseArgs(fs, args, 0, "usage: ironbark "+fs.Name()+" [flags]: no arguments"); err != nil {
		return err
	}
	reg, db, err := rf.openRegistry(ctx)
	if err != nil {
		return err
	}
	defer db.Close()
	nodes, err := reg.Nodes(ctx, *name)
	if err != nil {
		return err
	}
	return printNodes(os.Stdout, nodes)
}

func printNodes(w io.Writer, nodes []cluster.Node) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tCLUSTER\tHOSTNAME\tSTATE\tCORES\tMEMORY MiB\tDISK GiB\tHYPERVISOR\tLAST HEARTBEAT\tREVIEW")
	for _, n := range nodes {
		// The controller may not be running to mark silent nodes down.
		state := n.State
		if state == cluster.NodeUp && !n.Live(time.Now(), cluster.DefaultHeartbeatTimeout) {
			state = cluster.NodeDown
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%d\t%s\t%s\t%s\n", n.ID, n.Cluster, n.Hostname, state,
			n.Capacity.Cores, n.Capacity.MemoryMiB, n.Capacity.DiskGiB, n.Hypervisor, n.LastHeartbeat.Format(time.RFC3339), review(n))
	}
	return tw.Flush()
}

func runNodeRemove(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("node remove", flag.ContinueOnError)
	var rf storeFlags
	rf.add(fs)
	pos, err := parseArgs(fs, args, 1, "usage: ironbark node remove NODE-ID [--data-dir DIR]")
	if err != nil {
		return err
	}
	reg, db, err := rf.openRegistry(ctx)
	if err != nil {
		return err
	}
	defer db.Close()
	if err := reg.RemoveNode(ctx, pos[0]); err != nil {
		return err
	}
	slog.Info("node removed; its certificate no longer works", "node", pos[0])
	return nil
}
