package roll

import "io/fs"

// Profile is one appliance's install profile for one host (or for the
// appliance alone, with its default attributes): what the graph walk
// collected, in the order the order graph gives. It is the contract
// between this package and the appliance builder (images/appliance): the
// builder installs Packages into a Debian tree, writes Files, runs Scripts
// inside the tree in order, then writes the disk image.
type Profile struct {
	Appliance string `json:"appliance"`
	Arch      string `json:"arch"`    // e.g. x86_64
	OS        string `json:"os"`      // e.g. debian
	Release   string `json:"release"` // e.g. 12 (bookworm)
	// Nodes are the graph nodes visited, in install order.
	Nodes []ProfileNode `json:"nodes"`
	// Packages are Debian package names, deduplicated, in order of first
	// appearance.
	Packages []Package `json:"packages"`
	Files    []File    `json:"files"`
	// Scripts are the <post> sections in install order.
	Scripts []Script `json:"scripts"`
	// Attrs are the resolved attributes the node files were rendered with
	// (value only; Attr sources are shown by attribute listing).
	Attrs map[string]string `json:"attrs"`
}

// Origin says where a piece of a profile came from, so errors and listings
// can name the roll, the node and file:line.
type Origin struct {
	Roll string `json:"roll"`
	Node string `json:"node"`
	Pos  string `json:"pos"` // file:line inside the roll
}

// ProfileNode is one visited graph node.
type ProfileNode struct {
	Name string `json:"name"`
	Origin
}

// Package is one Debian package an appliance installs.
type Package struct {
	Name string `json:"name"`
	Origin
}

// File is a file the profile writes into the image. Content is already
// rendered (host attributes substituted) or, for a file shipped in the
// roll (src=), its bytes.
type File struct {
	Path    string      `json:"path"`   // absolute path inside the image
	Mode    fs.FileMode `json:"mode"`   // 0 with Append: keep the existing file's mode
	Owner   string      `json:"owner"`  // user[:group], "" = root:root
	Append  bool        `json:"append"` // mode="append": add to an existing file
	Content []byte      `json:"content"`
	// Source, when set, names a file the roll does not carry and the
	// builder must supply, with Content empty: <file src="bin/NAME">
	// in a built-in roll, for the frontend's own binaries (bin/ironbark,
	// bin/ironbark-node).
	Source string `json:"source,omitempty"`
	Origin
}

// Script is a <post> section: run inside the image's tree (chroot) after
// packages and files, in order. A non-zero exit fails the build with its
// output and Origin.
type Script struct {
	Interpreter string `json:"interpreter"` // "" = /bin/sh
	Body        string `json:"body"`
	Origin
}
