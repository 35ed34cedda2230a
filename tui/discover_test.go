package tui

import (
	"context"
	"strings"
	"testing"

	tea "github.com/charmbracelet/bubbletea"
)

func TestDiscoveryScreen(t *testing.T) {
	s := &DiscoveryScreen{Title: "Discovering compute appliances for cluster c1, rack 0",
		Poll: func(context.Context) ([]DiscoveredNode, error) {
			return []DiscoveredNode{{Name: "compute-0-0", MAC: "52:54:00:1b:00:01", IP: "10.1.0.128", Status: "installing 45% writing image"}}, nil
		}}
	if v := s.View(); !strings.Contains(v, "waiting for nodes") {
		t.Fatalf("empty screen:\n%s", v)
	}
	msg := s.Init()()
	_, cmd := s.Update(msg)
	if cmd == nil {
		t.Fatal("no next poll scheduled")
	}
	v := s.View()
	for _, want := range []string{"compute-0-0", "52:54:00:1b:00:01", "10.1.0.128", "installing 45%", "1 discovered"} {
		if !strings.Contains(v, want) {
			t.Fatalf("screen lacks %q:\n%s", want, v)
		}
	}
	_, cmd = s.Update(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune("q")})
	if cmd == nil {
		t.Fatal("q did not quit")
	}
	if _, ok := cmd().(tea.QuitMsg); !ok {
		t.Fatal("q did not quit")
	}
}
