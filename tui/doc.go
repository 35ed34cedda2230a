// Package tui holds ironbark's terminal screens (bubbletea). Screens take
// plain data and callbacks, not stores, so they can be driven in tests:
// the discovery screen (insert-ethers), the frontend installer's screens
// (Installer, RunInstaller: the answers of installer/frontend, checked as
// typed, then the install's progress), and the operator's dashboard
// (Dashboard, over a DashboardSource).
package tui
