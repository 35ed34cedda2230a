// Package roll reads rolls (a manifest, Rocks-style node and graph files,
// Debian package names and files, signed with ed25519), merges the enabled
// rolls' graphs, resolves host attributes along Rocks' chain (global < os <
// appliance < rack < host) and walks the graph for an appliance into a
// Profile: the ordered packages, files and post scripts that the appliance
// builder (images/appliance) lays into a disk image.
package roll
