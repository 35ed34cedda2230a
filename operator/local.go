package operator

import (
	"context"
	"fmt"

	"ironbark/controller"
	"ironbark/controller/cluster"
	"ironbark/controller/sched"
	"ironbark/images"
	"ironbark/images/blobstore"
	"ironbark/internal/nodeapi"
	"ironbark/internal/store"
	"ironbark/pxe"
	"ironbark/tui"
)

// Local reads the dashboard's snapshot from a frontend's store and makes
// the operator's changes there.
type Local struct {
	db     *store.DB
	reg    *cluster.Registry
	hosts  *pxe.Hosts
	cat    *controller.ImageCatalog
	blobs  *blobstore.Store
	vtypes map[string]vmType
}

type vmType struct{ cores, mem int }

// NewLocal is a Local over a store with the controller's and pxe's
// migrations applied; vmTypes size each instance.
func NewLocal(ctx context.Context, db *store.DB, cat *controller.ImageCatalog, blobs *blobstore.Store, vmTypes []nodeapi.VMType) (*Local, error) {
	reg, err := cluster.NewRegistry(ctx, db)
	if err != nil {
		return nil, err
	}
	l := &Local{db: db, reg: reg, hosts: pxe.NewHosts(db), cat: cat, blobs: blobs, vtypes: map[string]vmType{}}
	for _, v := range vmTypes {
		l.vtypes[v.Name] = vmType{v.Cores, v.MemoryMiB}
	}
	return l, nil
}

// Snapshot is the dashboard's view now.
func (s *Local) Snapshot(ctx context.Context) (tui.Snapshot, error) {
	var snap tui.Snapshot
	rows, err := s.db.Query(ctx, `SELECT id, account_id, vm_type, node_id, state FROM instances WHERE state <> 'terminated' ORDER BY id`)
	if err != nil {
		return snap, fmt.Errorf("instances: %w", err)
	}
	used := map[string]vmType{}
	for rows.Next() {
		var in tui.InstanceRow
		if err := rows.Scan(&in.ID, &in.Account, &in.Type, &in.Node, &in.State); err != nil {
			rows.Close()
			return snap, err
		}
		snap.Instances = append(snap.Instances, in)
		u, vt := used[in.Node], s.vtypes[in.Type]
		used[in.Node] = vmType{u.cores + vt.cores, u.mem + vt.mem}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return snap, fmt.Errorf("instances: %w", err)
	}
	nodes, err := s.reg.Nodes(ctx, "")
	if err != nil {
		return snap, err
	}
	cs, err := s.reg.Clusters(ctx)
	if err != nil {
		return snap, err
	}
	for _, c := range cs {
		snap.Clusters = append(snap.Clusters, tui.ClusterRow{Name: c.Name, Policy: c.Policy})
	}
	per := map[string]*tui.ClusterRow{}
	for i := range snap.Clusters {
		per[snap.Clusters[i].Name] = &snap.Clusters[i]
	}
	for _, n := range nodes {
		u := used[n.ID]
		snap.Nodes = append(snap.Nodes, tui.NodeRow{ID: n.ID, Cluster: n.Cluster, Hostname: n.Hostname, State: n.State, Drained: n.Drained,
			CoresUsed: u.cores, Cores: n.Capacity.Cores, MemoryUsed: u.mem, MemoryMiB: n.Capacity.MemoryMiB, LastHeartbeat: n.LastHeartbeat})
		if c := per[n.Cluster]; c != nil {
			c.Nodes++
			c.Cores += n.Capacity.Cores
			c.CoresUsed += u.cores
			c.MemoryMi += n.Capacity.MemoryMiB
			c.MemoryUsed += u.mem
		}
	}
	hs, err := s.hosts.List(ctx)
	if err != nil {
		return snap, err
	}
	for _, h := range hs {
		snap.Hosts = append(snap.Hosts, tui.HostRow{Name: h.Name, MAC: h.MAC, IP: h.IP, Cluster: h.Cluster, Boot: string(h.Boot), Status: h.Status()})
	}
	ims, err := images.List(ctx, s.cat, s.blobs)
	if err != nil {
		return snap, err
	}
	for _, im := range ims {
		snap.Images = append(snap.Images, tui.ImageRow{ID: im.ID, Kind: im.Kind, Name: im.Name, State: im.State})
	}
	return snap, nil
}

// AddCluster adds a cluster (availability zone) with the greedy policy.
func (s *Local) AddCluster(ctx context.Context, name string) error {
	return s.reg.AddCluster(ctx, name, sched.Greedy)
}

// Reinstall makes a host install again at its next PXE boot.
func (s *Local) Reinstall(ctx context.Context, host string) error {
	return s.hosts.SetBoot(ctx, host, pxe.BootInstall)
}

// SetDrained drains or undrains a node.
func (s *Local) SetDrained(ctx context.Context, node string, drained bool) error {
	return s.reg.SetDrained(ctx, node, drained)
}
