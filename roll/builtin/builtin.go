package builtin

import (
	"embed"
	"io/fs"
)

//go:embed base hypervisor-xen hypervisor-kvm ironbark-node frontend
var rolls embed.FS

// Names are the built-in rolls, each a directory of FS.
func Names() []string {
	return []string{"base", "hypervisor-xen", "hypervisor-kvm", "ironbark-node", "frontend"}
}

// FS holds one directory per built-in roll.
func FS() fs.FS { return rolls }

// Roll is one built-in roll's directory.
func Roll(name string) (fs.FS, error) { return fs.Sub(rolls, name) }
