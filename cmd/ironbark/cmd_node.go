package main

import (
	"context"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"

	"ironbark/controller"
	"ironbark/controller/cluster"
	"ironbark/controller/sched"
	"ironbark/internal/nodeapi"
	"ironbark/internal/pki"
)

// openRegistry opens the store and the cluster registry on it.
func (e *env) openRegistry(ctx context.Context) (*cluster.Registry, error) {
	db, err := e.openStore(ctx, nil)
	if err != nil {
		return nil, err
	}
	return cluster.NewRegistry(ctx, db)
}

func clusterAdd(fs *flag.FlagSet) runFunc {
	policy := fs.String("policy", sched.Greedy, "scheduling policy: "+strings.Join(sched.Policies(), ", "))
	nf := addClusterNetFlags(fs)
	return func(ctx context.Context, e *env) error {
		p, err := sched.New(*policy)
		if err != nil {
			return err
		}
		if *nf.mode != "" {
			if _, err := cluster.CheckMode(*nf.mode); err != nil {
				return e.usagef("%v", err)
			}
		}
		reg, err := e.openRegistry(ctx)
		if err != nil {
			return err
		}
		if err := reg.AddCluster(ctx, e.args[0], p.Name()); err != nil {
			return err
		}
		n, err := nf.apply(ctx, e, e.args[0], true)
		if err != nil {
			// Nothing half-made: the cluster goes again.
			if rerr := reg.RemoveCluster(ctx, e.args[0]); rerr != nil {
				e.say("remove cluster %s again: %v", e.args[0], rerr)
			}
			return err
		}
		e.say("cluster %s added (policy %s, network %s, instance subnet %s, public IPs at launch %s)",
			e.args[0], p.Name(), modeOf(n), orDefault(n.Subnet), onOff(n.PublicIPs))
		return nil
	}
}

func clusterSetPolicy(fs *flag.FlagSet) runFunc {
	return func(ctx context.Context, e *env) error {
		p, err := sched.New(e.args[1])
		if err != nil {
			return err
		}
		reg, err := e.openRegistry(ctx)
		if err != nil {
			return err
		}
		if err := reg.SetPolicy(ctx, e.args[0], p.Name()); err != nil {
			return err
		}
		e.say("cluster %s: policy %s", e.args[0], p.Name())
		return nil
	}
}

// clusterRow is a line of `cluster list`, and its JSON shape.
type clusterRow struct {
	Name    string `json:"name"`
	Policy  string `json:"policy"`
	Network string `json:"networkMode"`
	Subnet  string `json:"instanceSubnet"`
	Public  bool   `json:"publicIps"`
	// MANAGED mode's group networks (zero elsewhere).
	VLANs       *[2]int   `json:"vlans,omitempty"`
	AddrsPerNet int       `json:"addrsPerNet,omitempty"`
	NodesUp     int       `json:"nodesUp"`
	Nodes       int       `json:"nodes"`
	Created     time.Time `json:"created"`
}

func clusterList(fs *flag.FlagSet) runFunc {
	return func(ctx context.Context, e *env) error {
		reg, err := e.openRegistry(ctx)
		if err != nil {
			return err
		}
		cs, err := reg.Clusters(ctx)
		if err != nil {
			return err
		}
		nodes, err := reg.Nodes(ctx, "")
		if err != nil {
			return err
		}
		settings, err := controller.LoadSettings(e.dataDir)
		if err != nil {
			return err
		}
		rows := make([]clusterRow, len(cs))
		for i, c := range cs {
			rows[i] = clusterRow{Name: c.Name, Policy: c.Policy, Created: c.Created.UTC(),
				Network: c.Network.Mode, Subnet: subnetOf(c.Network, settings, c.Name), Public: c.Network.PublicIPs}
			if c.Network.Mode == nodeapi.ModeManaged {
				rows[i].VLANs, rows[i].AddrsPerNet = groupNetsOf(c.Network, rows[i].Subnet)
			}
			for _, n := range nodes {
				if n.Cluster == c.Name {
					rows[i].Nodes++
					if n.Live(time.Now(), cluster.DefaultHeartbeatTimeout) {
						rows[i].NodesUp++
					}
				}
			}
		}
		return printList(e, []string{"CLUSTER", "POLICY", "NETWORK", "INSTANCE SUBNET", "PUBLIC IPS", "NODES UP", "NODES", "CREATED"}, rows)
	}
}

func (r clusterRow) cells() []string {
	network := r.Network
	if r.VLANs != nil {
		// MANAGED: "MANAGED vlans 10-4094 x256"
		network += fmt.Sprintf(" vlans %d-%d x%d", r.VLANs[0], r.VLANs[1], r.AddrsPerNet)
	}
	return []string{r.Name, r.Policy, network, r.Subnet, onOff(r.Public), strconv.Itoa(r.NodesUp), strconv.Itoa(r.Nodes), r.Created.Format(time.RFC3339)}
}

func nodeToken(fs *flag.FlagSet) runFunc {
	name := fs.String("cluster", "", "cluster the node joins (required)")
	ttl := fs.Duration("ttl", cluster.DefaultTokenTTL, "how long the token stays valid")
	return func(ctx context.Context, e *env) error {
		if *name == "" {
			return e.usagef("node token: --cluster is required")
		}
		reg, err := e.openRegistry(ctx)
		if err != nil {
			return err
		}
		ca, err := pki.LoadOrCreateCA(e.dir().PKI())
		if err != nil {
			return err
		}
		tok, err := reg.NewToken(ctx, ca, *name, *ttl)
		if err != nil {
			return err
		}
		e.say("# one-time enrollment token for cluster %s, valid until %s:\n# save it to a file (mode 0600) and run: ironbark-node --controller https://FRONTEND:8774 --token-file FILE --state-dir /var/lib/ironbark-node",
			*name, time.Now().Add(*ttl).UTC().Format(time.RFC3339))
		_, err = e.stdout.Write([]byte(tok + "\n"))
		return err
	}
}

// nodeRow is a line of `node list`, and its JSON shape.
type nodeRow struct {
	ID            string    `json:"id"`
	Cluster       string    `json:"cluster"`
	Hostname      string    `json:"hostname"`
	State         string    `json:"state"`
	Cores         int       `json:"cores"`
	MemoryMiB     int       `json:"memoryMiB"`
	DiskGiB       int       `json:"diskGiB"`
	Hypervisor    string    `json:"hypervisor"`
	LastHeartbeat time.Time `json:"lastHeartbeat"`
	// Review is "ok", or says the node is new and what it declares beyond
	// its approved capacity.
	Review   string           `json:"review"`
	Declared nodeapi.Capacity `json:"declared"`
}

func nodeList(fs *flag.FlagSet) runFunc {
	name := fs.String("cluster", "", "only this cluster's nodes")
	return func(ctx context.Context, e *env) error {
		reg, err := e.openRegistry(ctx)
		if err != nil {
			return err
		}
		nodes, err := reg.Nodes(ctx, *name)
		if err != nil {
			return err
		}
		rows := make([]nodeRow, len(nodes))
		for i, n := range nodes {
			// The controller may not be running to mark silent nodes down.
			state := n.State
			if state == cluster.NodeUp && !n.Live(time.Now(), cluster.DefaultHeartbeatTimeout) {
				state = cluster.NodeDown
			}
			if n.Drained {
				state += ",drained"
			}
			rows[i] = nodeRow{ID: n.ID, Cluster: n.Cluster, Hostname: n.Hostname, State: state,
				Cores: n.Capacity.Cores, MemoryMiB: n.Capacity.MemoryMiB, DiskGiB: n.Capacity.DiskGiB,
				Hypervisor: n.Hypervisor, LastHeartbeat: n.LastHeartbeat.UTC(), Review: review(n), Declared: n.Declared}
		}
		return printList(e, []string{"NODE", "CLUSTER", "HOSTNAME", "STATE", "CORES", "MEMORY MiB", "DISK GiB", "HYPERVISOR", "LAST HEARTBEAT", "REVIEW"}, rows)
	}
}

func (r nodeRow) cells() []string {
	return []string{r.ID, r.Cluster, r.Hostname, r.State, strconv.Itoa(r.Cores), strconv.Itoa(r.MemoryMiB),
		strconv.Itoa(r.DiskGiB), r.Hypervisor, r.LastHeartbeat.Format(time.RFC3339), r.Review}
}

func nodeRemove(fs *flag.FlagSet) runFunc {
	force := fs.Bool("force", false, "terminate the node's instances (reason Server.InternalError) instead of refusing")
	return func(ctx context.Context, e *env) error {
		reg, err := e.openRegistry(ctx)
		if err != nil {
			return err
		}
		node := e.args[0]
		if _, err := reg.Node(ctx, node); err != nil {
			return err
		}
		db, err := e.openStore(ctx, controller.Migrations())
		if err != nil {
			return err
		}
		live, err := controller.LiveInstancesOnNode(ctx, db, node)
		if err != nil {
			return err
		}
		if len(live) > 0 && !*force {
			return fmt.Errorf("node %s still holds %d instance(s) (%s): terminate them first, or remove it with --force to terminate them",
				node, len(live), strings.Join(live, ", "))
		}
		if len(live) > 0 {
			ended, err := controller.TerminateOnNode(ctx, db, node)
			if err != nil {
				return err
			}
			e.say("terminated %d instance(s) on %s: %s", len(ended), node, strings.Join(ended, ", "))
		}
		if err := reg.RemoveNode(ctx, node); err != nil {
			return err
		}
		e.say("node %s removed; its certificate no longer works", node)
		return nil
	}
}

// nodeDrain is `node drain` (drained=true) and `node undrain`.
func nodeDrain(drained bool) func(fs *flag.FlagSet) runFunc {
	return func(fs *flag.FlagSet) runFunc {
		return func(ctx context.Context, e *env) error {
			reg, err := e.openRegistry(ctx)
			if err != nil {
				return err
			}
			if err := reg.SetDrained(ctx, e.args[0], drained); err != nil {
				return err
			}
			if drained {
				e.say("node %s drained: its instances stay, new ones go elsewhere", e.args[0])
			} else {
				e.say("node %s back in service", e.args[0])
			}
			return nil
		}
	}
}
