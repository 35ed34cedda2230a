package tui

import (
	"strings"
	"sync"
)

// LogRing keeps the last lines written to it: the failure screen shows
// the install log's tail.
type LogRing struct {
	mu    sync.Mutex
	lines []string
	part  string
	Max   int // lines kept; 0 means 200
}

// Write implements io.Writer.
func (l *LogRing) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	max := l.Max
	if max == 0 {
		max = 200
	}
	s := l.part + string(p)
	parts := strings.Split(s, "\n")
	l.part = parts[len(parts)-1]
	l.lines = append(l.lines, parts[:len(parts)-1]...)
	if len(l.lines) > max {
		l.lines = append([]string(nil), l.lines[len(l.lines)-max:]...)
	}
	return len(p), nil
}

// Tail returns the last n lines.
func (l *LogRing) Tail(n int) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if n > len(l.lines) {
		n = len(l.lines)
	}
	return append([]string(nil), l.lines[len(l.lines)-n:]...)
}
