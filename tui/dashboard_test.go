package tui

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	tea "github.com/charmbracelet/bubbletea"
)

// fakeSource is the dashboard's source as a table the test changes.
type fakeSource struct {
	snap    Snapshot
	actions []string
}

func (f *fakeSource) Snapshot(context.Context) (Snapshot, error) { return f.snap, nil }
func (f *fakeSource) AddCluster(_ context.Context, name string) error {
	if name == "" {
		return errors.New("cluster name \"\": use letters")
	}
	f.actions = append(f.actions, "add "+name)
	f.snap.Clusters = append(f.snap.Clusters, ClusterRow{Name: name, Policy: "GREEDY"})
	return nil
}
func (f *fakeSource) Reinstall(_ context.Context, h string) error {
	f.actions = append(f.actions, "reinstall "+h)
	return nil
}
func (f *fakeSource) SetDrained(_ context.Context, n string, d bool) error {
	f.actions = append(f.actions, "drain "+n+" "+map[bool]string{true: "on", false: "off"}[d])
	for i := range f.snap.Nodes {
		if f.snap.Nodes[i].ID == n {
			f.snap.Nodes[i].Drained = d
		}
	}
	return nil
}

// step runs a command's message through Update (ticks excluded).
func step(d *Dashboard, cmd tea.Cmd) {
	if cmd == nil {
		return
	}
	switch msg := cmd().(type) {
	case snapMsg, actionMsg:
		_, next := d.Update(msg)
		if _, isAction := msg.(actionMsg); isAction {
			step(d, next) // the reload after an action
		}
	}
}

func press(d *Dashboard, keys ...string) {
	for _, k := range keys {
		var msg tea.KeyMsg
		switch k {
		case "enter":
			msg = tea.KeyMsg{Type: tea.KeyEnter}
		case "esc":
			msg = tea.KeyMsg{Type: tea.KeyEsc}
		case "down":
			msg = tea.KeyMsg{Type: tea.KeyDown}
		case "tab":
			msg = tea.KeyMsg{Type: tea.KeyTab}
		default:
			msg = tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune(k)}
		}
		_, cmd := d.Update(msg)
		step(d, cmd)
	}
}

func TestDashboard(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	src := &fakeSource{snap: Snapshot{
		Clusters: []ClusterRow{{Name: "cluster0", Policy: "GREEDY", Nodes: 1, CoresUsed: 1, Cores: 4, MemoryUsed: 256, MemoryMi: 4096}},
		Nodes: []NodeRow{{ID: "node-1a2b", Cluster: "cluster0", Hostname: "compute-0-0", State: "up", CoresUsed: 1, Cores: 4,
			MemoryUsed: 256, MemoryMiB: 4096, LastHeartbeat: now.Add(-3 * time.Second)}},
		Hosts:     []HostRow{{Name: "compute-0-0", MAC: "52:54:00:1b:00:01", IP: "10.1.1.128", Cluster: "cluster0", Boot: "os", Status: "installed"}},
		Instances: []InstanceRow{{ID: "i-0123456789abcdef0", Account: "805694438796", Type: "m1.small", Node: "node-1a2b", State: "running"}},
		Images:    []ImageRow{{ID: "emi-710b064d", Kind: "machine", Name: "debian", State: "available"}},
	}}
	d := &Dashboard{Source: src, Now: func() time.Time { return now }}
	d.Update(tea.WindowSizeMsg{Width: 80, Height: 24})
	step(d, d.Init())
	want := func(subs ...string) {
		t.Helper()
		v := d.View()
		for _, s := range subs {
			if !strings.Contains(v, s) {
				t.Fatalf("view lacks %q:\n%s", s, v)
			}
		}
		for _, l := range strings.Split(v, "\n") {
			if n := len([]rune(stripANSI(l))); n > 80 {
				t.Errorf("line of %d columns: %q", n, stripANSI(l))
			}
		}
	}
	want("[1 Clusters]", "cluster0", "GREEDY", "1/4", "256/4096")

	// Add a cluster: Esc cancels, Enter adds.
	press(d, "a", "c", "1", "esc")
	if len(src.actions) != 0 {
		t.Fatalf("Esc added: %v", src.actions)
	}
	press(d, "a", "c", "1", "enter")
	want("c1", "cluster c1 added")
	// An error from the source is shown as an event.
	press(d, "a", "enter")
	want(`failed: cluster name "": use letters`)

	press(d, "2")
	want("[2 Nodes]", "node-1a2b", "compute-0-0", "up", "1/4", "3s ago")
	press(d, "x")
	want("node-1a2b drained", "up,drained")
	press(d, "x")
	want("back in service")

	press(d, "3")
	want("[3 Hosts]", "52:54:00:1b:00:01", "installed")
	press(d, "r")
	if src.actions[len(src.actions)-1] != "reinstall compute-0-0" {
		t.Fatalf("actions %v", src.actions)
	}

	press(d, "4")
	want("i-0123456789abcdef0", "m1.small", "running")
	press(d, "5")
	want("emi-710b064d", "debian")

	// Live: a change in the next snapshot becomes an event.
	src.snap.Instances = []InstanceRow{{ID: "i-0123456789abcdef0", Account: "805694438796", Type: "m1.small", Node: "node-1a2b", State: "shutting-down"}}
	step(d, d.load())
	press(d, "6")
	want("instance i-0123456789abcdef0: running -> shutting-down")

	// Discovery: the dashboard hands over to the insert-ethers screen.
	press(d, "1", "down")
	_, cmd := d.Update(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune("d")})
	if d.Discover != "c1" || cmd == nil {
		t.Fatalf("discover %q", d.Discover)
	}
	if _, ok := cmd().(tea.QuitMsg); !ok {
		t.Fatal("d did not hand over")
	}
}
