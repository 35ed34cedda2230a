package tui

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/charmbracelet/bubbles/textinput"
	tea "github.com/charmbracelet/bubbletea"
)

// Snapshot is the frontend's state as the dashboard shows it.
type Snapshot struct {
	Clusters  []ClusterRow
	Nodes     []NodeRow
	Hosts     []HostRow
	Instances []InstanceRow
	Images    []ImageRow
}

// ClusterRow is a cluster (availability zone) with its capacity.
type ClusterRow struct {
	Name, Policy         string
	Nodes                int
	CoresUsed, Cores     int
	MemoryUsed, MemoryMi int // MiB
}

// NodeRow is an enrolled node.
type NodeRow struct {
	ID, Cluster, Hostname, State string
	Drained                      bool
	CoresUsed, Cores             int
	MemoryUsed, MemoryMiB        int
	LastHeartbeat                time.Time
}

// HostRow is a PXE host (what discovery named).
type HostRow struct{ Name, MAC, IP, Cluster, Boot, Status string }

// InstanceRow is an instance.
type InstanceRow struct{ ID, Account, Type, Node, State string }

// ImageRow is a registered image.
type ImageRow struct{ ID, Kind, Name, State string }

// DashboardSource is what the dashboard reads and changes.
type DashboardSource interface {
	Snapshot(ctx context.Context) (Snapshot, error)
	AddCluster(ctx context.Context, name string) error
	Reinstall(ctx context.Context, host string) error
	SetDrained(ctx context.Context, node string, drained bool) error
}

type dashTab int

const (
	tabClusters dashTab = iota
	tabNodes
	tabHosts
	tabInstances
	tabImages
	tabEvents
)

var tabNames = []string{"Clusters", "Nodes", "Hosts", "Instances", "Images", "Events"}

// Dashboard is `ironbark tui`: the frontend's clusters, nodes, hosts,
// instances and images, refreshed live, with the operator's actions:
// add a cluster (a), discover nodes for one (d), reinstall a host (r),
// drain or undrain a node (x).
type Dashboard struct {
	Source   DashboardSource
	Interval time.Duration // refresh; 0 means 2 s
	Now      func() time.Time

	snap   Snapshot
	prev   *Snapshot
	err    error
	tab    dashTab
	cursor [6]int
	events []string
	width  int
	adding bool
	input  textinput.Model
	// Discover is set when the operator asked to discover nodes for a
	// cluster: the dashboard quits and the caller runs the discovery
	// screen, then the dashboard again.
	Discover string
}

type snapMsg struct {
	s   Snapshot
	err error
}

type actionMsg struct {
	what string
	err  error
}

func (d *Dashboard) now() time.Time {
	if d.Now != nil {
		return d.Now()
	}
	return time.Now()
}

func (d *Dashboard) load() tea.Cmd {
	return func() tea.Msg {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s, err := d.Source.Snapshot(ctx)
		return snapMsg{s, err}
	}
}

func (d *Dashboard) tick() tea.Cmd {
	iv := d.Interval
	if iv <= 0 {
		iv = 2 * time.Second
	}
	return tea.Tick(iv, func(time.Time) tea.Msg { return d.load()() })
}

func (d *Dashboard) act(what string, fn func(ctx context.Context) error) tea.Cmd {
	return func() tea.Msg {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return actionMsg{what, fn(ctx)}
	}
}

// Init implements tea.Model.
func (d *Dashboard) Init() tea.Cmd { return d.load() }

func (d *Dashboard) event(format string, a ...any) {
	d.events = append(d.events, d.now().UTC().Format("15:04:05")+" "+fmt.Sprintf(format, a...))
	if len(d.events) > 100 {
		d.events = d.events[len(d.events)-100:]
	}
}

// changes turns the difference between two snapshots into events.
func (d *Dashboard) changes(old, cur Snapshot) {
	was := map[string]string{}
	for _, n := range old.Nodes {
		was["node "+n.ID] = nodeState(n)
	}
	for _, h := range old.Hosts {
		was["host "+h.Name] = h.Status
	}
	for _, i := range old.Instances {
		was["instance "+i.ID] = i.State
	}
	note := func(k, v string) {
		if o, ok := was[k]; !ok {
			d.event("%s appeared: %s", k, v)
		} else if o != v {
			d.event("%s: %s -> %s", k, o, v)
		}
	}
	for _, n := range cur.Nodes {
		note("node "+n.ID, nodeState(n))
	}
	for _, h := range cur.Hosts {
		note("host "+h.Name, h.Status)
	}
	for _, i := range cur.Instances {
		note("instance "+i.ID, i.State)
	}
}

func nodeState(n NodeRow) string {
	if n.Drained {
		return n.State + ",drained"
	}
	return n.State
}

func (d *Dashboard) rows() int {
	switch d.tab {
	case tabClusters:
		return len(d.snap.Clusters)
	case tabNodes:
		return len(d.snap.Nodes)
	case tabHosts:
		return len(d.snap.Hosts)
	case tabInstances:
		return len(d.snap.Instances)
	case tabImages:
		return len(d.snap.Images)
	}
	return len(d.events)
}

// Update implements tea.Model.
func (d *Dashboard) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch m := msg.(type) {
	case tea.WindowSizeMsg:
		d.width = m.Width
	case snapMsg:
		d.err = m.err
		if m.err == nil {
			if d.prev != nil {
				d.changes(*d.prev, m.s)
			}
			d.snap = m.s
			s := m.s
			d.prev = &s
		}
		return d, d.tick()
	case actionMsg:
		if m.err != nil {
			d.event("%s failed: %v", m.what, m.err)
		} else {
			d.event("%s", m.what)
		}
		return d, d.load()
	case tea.KeyMsg:
		if d.adding {
			switch m.Type {
			case tea.KeyEsc:
				d.adding = false
				return d, nil
			case tea.KeyEnter:
				d.adding = false
				name := strings.TrimSpace(d.input.Value())
				return d, d.act("cluster "+name+" added", func(ctx context.Context) error { return d.Source.AddCluster(ctx, name) })
			}
			var cmd tea.Cmd
			d.input, cmd = d.input.Update(m)
			return d, cmd
		}
		switch m.String() {
		case "q", "ctrl+c":
			return d, tea.Quit
		case "tab", "right":
			d.tab = (d.tab + 1) % 6
		case "shift+tab", "left":
			d.tab = (d.tab + 5) % 6
		case "1", "2", "3", "4", "5", "6":
			d.tab = dashTab(m.String()[0] - '1')
		case "up", "k":
			if d.cursor[d.tab] > 0 {
				d.cursor[d.tab]--
			}
		case "down", "j":
			if d.cursor[d.tab] < d.rows()-1 {
				d.cursor[d.tab]++
			}
		case "a":
			if d.tab == tabClusters {
				d.adding = true
				d.input = textinput.New()
				d.input.Prompt = "New cluster name: "
				d.input.Focus()
			}
		case "d":
			if d.tab == tabClusters && d.cursor[0] < len(d.snap.Clusters) {
				d.Discover = d.snap.Clusters[d.cursor[0]].Name
				return d, tea.Quit
			}
		case "r":
			if d.tab == tabHosts && d.cursor[2] < len(d.snap.Hosts) {
				h := d.snap.Hosts[d.cursor[2]].Name
				return d, d.act("host "+h+" will reinstall at its next boot", func(ctx context.Context) error { return d.Source.Reinstall(ctx, h) })
			}
		case "x":
			if d.tab == tabNodes && d.cursor[1] < len(d.snap.Nodes) {
				n := d.snap.Nodes[d.cursor[1]]
				what := "node " + n.ID + " drained"
				if n.Drained {
					what = "node " + n.ID + " back in service"
				}
				return d, d.act(what, func(ctx context.Context) error { return d.Source.SetDrained(ctx, n.ID, !n.Drained) })
			}
		}
		if c := d.cursor[d.tab]; c >= d.rows() && c > 0 {
			d.cursor[d.tab] = max(d.rows()-1, 0)
		}
	}
	return d, nil
}

// View implements tea.Model.
func (d *Dashboard) View() string {
	var b strings.Builder
	var tabs []string
	for i, n := range tabNames {
		if dashTab(i) == d.tab {
			tabs = append(tabs, headStyle.Render(fmt.Sprintf("[%d %s]", i+1, n)))
		} else {
			tabs = append(tabs, fmt.Sprintf(" %d %s ", i+1, n))
		}
	}
	b.WriteString(titleStyle.Render("ironbark") + "  " + strings.Join(tabs, "") + "\n\n")
	sel := func(i int) string {
		if i == d.cursor[d.tab] {
			return "> "
		}
		return "  "
	}
	switch d.tab {
	case tabClusters:
		b.WriteString(headStyle.Render(fmt.Sprintf("  %-16s %-11s %5s %11s %15s", "CLUSTER", "POLICY", "NODES", "CORES USED", "MEMORY MiB USED")) + "\n")
		for i, c := range d.snap.Clusters {
			fmt.Fprintf(&b, "%s%-16s %-11s %5d %5d/%-5d %7d/%-7d\n", sel(i), c.Name, c.Policy, c.Nodes, c.CoresUsed, c.Cores, c.MemoryUsed, c.MemoryMi)
		}
		b.WriteString("\n" + hintStyle.Render("a: add a cluster · d: discover nodes for the selected cluster") + "\n")
	case tabNodes:
		b.WriteString(headStyle.Render(fmt.Sprintf("  %-14s %-10s %-12s %-12s %7s %11s %s", "NODE", "CLUSTER", "HOSTNAME", "STATE", "CORES", "MEMORY MiB", "HEARTBEAT")) + "\n")
		for i, n := range d.snap.Nodes {
			hb := "never"
			if !n.LastHeartbeat.IsZero() {
				hb = d.now().Sub(n.LastHeartbeat).Round(time.Second).String() + " ago"
			}
			fmt.Fprintf(&b, "%s%-14s %-10s %-12s %-12s %3d/%-3d %5d/%-5d %s\n", sel(i), n.ID, n.Cluster, n.Hostname, nodeState(n),
				n.CoresUsed, n.Cores, n.MemoryUsed, n.MemoryMiB, hb)
		}
		b.WriteString("\n" + hintStyle.Render("x: drain / undrain the selected node") + "\n")
	case tabHosts:
		b.WriteString(headStyle.Render(fmt.Sprintf("  %-14s %-17s %-15s %-9s %-7s %s", "HOST", "MAC", "IP", "CLUSTER", "BOOT", "INSTALL")) + "\n")
		for i, h := range d.snap.Hosts {
			fmt.Fprintf(&b, "%s%-14s %-17s %-15s %-9s %-7s %s\n", sel(i), h.Name, h.MAC, h.IP, h.Cluster, h.Boot, h.Status)
		}
		b.WriteString("\n" + hintStyle.Render("r: reinstall the selected host at its next boot") + "\n")
	case tabInstances:
		b.WriteString(headStyle.Render(fmt.Sprintf("  %-20s %-13s %-10s %-14s %s", "INSTANCE", "ACCOUNT", "TYPE", "NODE", "STATE")) + "\n")
		for i, in := range d.snap.Instances {
			fmt.Fprintf(&b, "%s%-20s %-13s %-10s %-14s %s\n", sel(i), in.ID, in.Account, in.Type, in.Node, in.State)
		}
	case tabImages:
		b.WriteString(headStyle.Render(fmt.Sprintf("  %-14s %-8s %-24s %s", "IMAGE", "KIND", "NAME", "STATE")) + "\n")
		for i, im := range d.snap.Images {
			fmt.Fprintf(&b, "%s%-14s %-8s %-24s %s\n", sel(i), im.ID, im.Kind, im.Name, im.State)
		}
	case tabEvents:
		evs := d.events
		if len(evs) > 15 {
			evs = evs[len(evs)-15:]
		}
		if len(evs) == 0 {
			b.WriteString(hintStyle.Render("no events yet: changes of nodes, hosts and instances appear here") + "\n")
		}
		for _, e := range evs {
			b.WriteString("  " + e + "\n")
		}
	}
	if d.adding {
		b.WriteString("\n" + d.input.View() + "\n" + hintStyle.Render("Enter adds it · Esc cancels") + "\n")
	}
	if d.err != nil {
		b.WriteString("\n" + errStyle.Render("error: "+d.err.Error()) + "\n")
	}
	if n := len(d.events); n > 0 && d.tab != tabEvents {
		b.WriteString("\n" + hintStyle.Render("last: "+d.events[n-1]) + "\n")
	}
	b.WriteString(hintStyle.Render("Tab/1-6: views · Up/Down: select · q: quit") + "\n")
	return fit(b.String(), d.width)
}
