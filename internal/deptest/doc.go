// Package deptest guards the shape of the tree with tests: every package
// has a doc comment, and the dependency rules ARCHITECTURE.md states hold
// (the installer links no cgo or libvirt; the node agent imports
// nothing of the controller; protocol packages import no store). It has
// no code of its own; the rules read `go list` as the build sees it.
package deptest
