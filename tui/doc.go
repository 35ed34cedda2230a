// Package tui holds ironbark's terminal screens (bubbletea). Screens take
// plain data and callbacks, not stores, so they can be driven in tests
// and reused by the frontend installer.
package tui
