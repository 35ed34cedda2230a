package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"

	tea "github.com/charmbracelet/bubbletea"

	"ironbark/controller"
	"ironbark/controller/cluster"
	"ironbark/controller/sched"
	"ironbark/images"
	"ironbark/images/blobstore"
	"ironbark/internal/store"
	"ironbark/pxe"
	"ironbark/tui"
)

// dashboard is `ironbark tui`: the operator's live dashboard on this
// frontend's data dir.
func dashboard(fs *flag.FlagSet) runFunc {
	return func(ctx context.Context, e *env) error {
		src, err := openLocalSource(ctx, e)
		if err != nil {
			return err
		}
		for {
			d := &tui.Dashboard{Source: src}
			if _, err := tea.NewProgram(d, tea.WithContext(ctx), tea.WithAltScreen(), tea.WithOutput(os.Stdout)).Run(); err != nil {
				if errors.Is(err, tea.ErrProgramKilled) || ctx.Err() != nil {
					return nil
				}
				return err
			}
			if d.Discover == "" {
				return nil
			}
			if err := runDiscover(ctx, e, discoverFlags{appliance: "compute", cluster: d.Discover, max: pxe.DefaultMaxHosts}); err != nil {
				e.say("discover: %v", err)
			}
		}
	}
}

// localSource reads the dashboard's snapshot from a frontend's store.
type localSource struct {
	db     *store.DB
	reg    *cluster.Registry
	hosts  *pxe.Hosts
	cat    *controller.ImageCatalog
	blobs  *blobstore.Store
	vtypes map[string]struct{ cores, mem int }
}

func openLocalSource(ctx context.Context, e *env) (*localSource, error) {
	db, err := e.openStore(ctx, append(controller.Migrations(), pxe.Migrations()...))
	if err != nil {
		return nil, err
	}
	reg, err := cluster.NewRegistry(ctx, db)
	if err != nil {
		return nil, err
	}
	cat, blobs, err := e.openImages(ctx)
	if err != nil {
		return nil, err
	}
	settings, err := controller.LoadSettings(e.dataDir)
	if err != nil {
		return nil, err
	}
	vts := settings.VMTypes
	if len(vts) == 0 {
		vts = controller.DefaultVMTypes()
	}
	s := &localSource{db: db, reg: reg, hosts: pxe.NewHosts(db), cat: cat, blobs: blobs, vtypes: map[string]struct{ cores, mem int }{}}
	for _, v := range vts {
		s.vtypes[v.Name] = struct{ cores, mem int }{v.Cores, v.MemoryMiB}
	}
	return s, nil
}

func (s *localSource) Snapshot(ctx context.Context) (tui.Snapshot, error) {
	var snap tui.Snapshot
	rows, err := s.db.Query(ctx, `SELECT id, account_id, vm_type, node_id, state FROM instances WHERE state <> 'terminated' ORDER BY id`)
	if err != nil {
		return snap, fmt.Errorf("instances: %w", err)
	}
	type use struct{ cores, mem int }
	used := map[string]use{}
	for rows.Next() {
		var in tui.InstanceRow
		if err := rows.Scan(&in.ID, &in.Account, &in.Type, &in.Node, &in.State); err != nil {
			rows.Close()
			return snap, err
		}
		snap.Instances = append(snap.Instances, in)
		u, vt := used[in.Node], s.vtypes[in.Type]
		used[in.Node] = use{u.cores + vt.cores, u.mem + vt.mem}
	}
	rows.Close()
	nodes, err := s.reg.Nodes(ctx, "")
	if err != nil {
		return snap, err
	}
	per := map[string]*tui.ClusterRow{}
	cs, err := s.reg.Clusters(ctx)
	if err != nil {
		return snap, err
	}
	for _, c := range cs {
		snap.Clusters = append(snap.Clusters, tui.ClusterRow{Name: c.Name, Policy: c.Policy})
	}
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

func (s *localSource) AddCluster(ctx context.Context, name string) error {
	return s.reg.AddCluster(ctx, name, sched.Greedy)
}

func (s *localSource) Reinstall(ctx context.Context, host string) error {
	return s.hosts.SetBoot(ctx, host, pxe.BootInstall)
}

func (s *localSource) SetDrained(ctx context.Context, node string, drained bool) error {
	return s.reg.SetDrained(ctx, node, drained)
}
