package tui

import (
	"context"
	"fmt"
	"strings"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"
)

// DiscoveredNode is one row of the discovery screen.
type DiscoveredNode struct {
	Name   string
	MAC    string
	IP     string
	Status string // "discovered", "installing 45% writing image", "installed", "failed: ..."
}

// DiscoveryScreen is insert-ethers' screen: nodes appear as they PXE-boot,
// with the names they get and their install progress; q ends discovery.
type DiscoveryScreen struct {
	Title string // "Discovering compute appliances for cluster c1, rack 0"
	// Poll returns the nodes discovered so far; called every Interval.
	Poll     func(ctx context.Context) ([]DiscoveredNode, error)
	Interval time.Duration

	nodes []DiscoveredNode
	err   error
	width int
}

type pollMsg struct {
	nodes []DiscoveredNode
	err   error
}

func (s *DiscoveryScreen) poll() tea.Cmd {
	return func() tea.Msg {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		n, err := s.Poll(ctx)
		return pollMsg{n, err}
	}
}

func (s *DiscoveryScreen) tick() tea.Cmd {
	iv := s.Interval
	if iv <= 0 {
		iv = 500 * time.Millisecond
	}
	return tea.Tick(iv, func(time.Time) tea.Msg { return s.poll()() })
}

// Init implements tea.Model.
func (s *DiscoveryScreen) Init() tea.Cmd { return s.poll() }

// Update implements tea.Model.
func (s *DiscoveryScreen) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch m := msg.(type) {
	case tea.KeyMsg:
		switch m.String() {
		case "q", "ctrl+c", "esc":
			return s, tea.Quit
		}
	case tea.WindowSizeMsg:
		s.width = m.Width
	case pollMsg:
		s.err = m.err
		if m.err == nil {
			s.nodes = m.nodes
		}
		return s, s.tick()
	}
	return s, nil
}

var (
	titleStyle = lipgloss.NewStyle().Bold(true).Foreground(lipgloss.Color("12"))
	headStyle  = lipgloss.NewStyle().Bold(true)
	errStyle   = lipgloss.NewStyle().Foreground(lipgloss.Color("9"))
	hintStyle  = lipgloss.NewStyle().Faint(true)
)

// View implements tea.Model.
func (s *DiscoveryScreen) View() string {
	var b strings.Builder
	b.WriteString(titleStyle.Render(s.Title) + "\n\n")
	b.WriteString(headStyle.Render(fmt.Sprintf("%-16s %-17s %-15s %s", "NAME", "MAC", "IP", "STATUS")) + "\n")
	if len(s.nodes) == 0 {
		b.WriteString(hintStyle.Render("waiting for nodes to PXE-boot...") + "\n")
	}
	for _, n := range s.nodes {
		fmt.Fprintf(&b, "%-16s %-17s %-15s %s\n", n.Name, n.MAC, n.IP, n.Status)
	}
	if s.err != nil {
		b.WriteString("\n" + errStyle.Render("error: "+s.err.Error()) + "\n")
	}
	b.WriteString("\n" + hintStyle.Render(fmt.Sprintf("%d discovered · q ends discovery", len(s.nodes))) + "\n")
	return b.String()
}

// Nodes returns the rows last shown.
func (s *DiscoveryScreen) Nodes() []DiscoveredNode { return s.nodes }
