package initramfs

import (
	"bufio"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// Module is one kernel module resolved from modules.dep.
type Module struct {
	Name string   // canonical name, dashes as underscores: "virtio_net"
	Path string   // path relative to the modules dir: "kernel/drivers/net/virtio_net.ko"
	Deps []string // paths (relative) of the modules it needs, as modules.dep lists them
}

// ModuleName returns the canonical module name of a module file path or a
// user-given name: base name without .ko/.ko.xz/.ko.zst/.ko.gz, dashes as
// underscores.
func ModuleName(p string) string {
	b := path.Base(filepath.ToSlash(p))
	for _, ext := range []string{".ko.xz", ".ko.zst", ".ko.gz", ".ko"} {
		if strings.HasSuffix(b, ext) {
			b = strings.TrimSuffix(b, ext)
			break
		}
	}
	return strings.ReplaceAll(b, "-", "_")
}

// ModuleIndex is the parsed modules.dep (and modules.builtin) of one kernel.
type ModuleIndex struct {
	Dir     string // the modules dir, /lib/modules/VERSION
	Version string // base name of Dir
	byName  map[string]*Module
	builtin map[string]bool
}

// LoadModuleIndex reads dir/modules.dep (written by depmod) and, if
// present, dir/modules.builtin.
func LoadModuleIndex(dir string) (*ModuleIndex, error) {
	idx := &ModuleIndex{Dir: dir, Version: filepath.Base(dir), byName: map[string]*Module{}, builtin: map[string]bool{}}
	f, err := os.Open(filepath.Join(dir, "modules.dep"))
	if err != nil {
		return nil, fmt.Errorf("module index: %w (run depmod for this kernel)", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		mod, deps, ok := strings.Cut(text, ":")
		if !ok {
			return nil, fmt.Errorf("%s/modules.dep:%d: missing ':'", dir, line)
		}
		m := &Module{Name: ModuleName(mod), Path: strings.TrimSpace(mod), Deps: strings.Fields(deps)}
		idx.byName[m.Name] = m
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s/modules.dep: %w", dir, err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "modules.builtin")); err == nil {
		for _, l := range strings.Fields(string(b)) {
			idx.builtin[ModuleName(l)] = true
		}
	}
	return idx, nil
}

// Builtin reports whether the named module is built into the kernel.
func (idx *ModuleIndex) Builtin(name string) bool { return idx.builtin[ModuleName(name)] }

// Resolve returns the named modules and everything they depend on, in an
// order in which they can be loaded one by one with insmod (dependencies
// first). Modules built into the kernel are skipped; an unknown module is
// an error.
func (idx *ModuleIndex) Resolve(names []string) ([]Module, error) {
	var order []Module
	state := map[string]int{} // 0 unseen, 1 visiting, 2 done
	var visit func(m *Module, chain []string) error
	visit = func(m *Module, chain []string) error {
		switch state[m.Name] {
		case 2:
			return nil
		case 1:
			return fmt.Errorf("module dependency cycle: %s -> %s", strings.Join(chain, " -> "), m.Name)
		}
		state[m.Name] = 1
		for _, d := range m.Deps {
			dm, ok := idx.byName[ModuleName(d)]
			if !ok {
				return fmt.Errorf("module %s needs %s, which modules.dep does not list", m.Name, d)
			}
			if err := visit(dm, append(chain, m.Name)); err != nil {
				return err
			}
		}
		state[m.Name] = 2
		order = append(order, *m)
		return nil
	}
	for _, n := range names {
		name := ModuleName(n)
		m, ok := idx.byName[name]
		if !ok {
			if idx.builtin[name] {
				continue
			}
			return nil, fmt.Errorf("module %q not found in %s/modules.dep", n, idx.Dir)
		}
		if err := visit(m, nil); err != nil {
			return nil, err
		}
	}
	return order, nil
}

// ResolveModules loads the index of modulesDir and resolves names; see
// ModuleIndex.Resolve.
func ResolveModules(modulesDir string, names []string) ([]Module, error) {
	idx, err := LoadModuleIndex(modulesDir)
	if err != nil {
		return nil, err
	}
	return idx.Resolve(names)
}

// depFile renders a modules.dep for exactly the given modules.
func depFile(mods []Module) []byte {
	var b strings.Builder
	for _, m := range mods {
		b.WriteString(m.Path)
		b.WriteString(":")
		for _, d := range m.Deps {
			b.WriteString(" ")
			b.WriteString(d)
		}
		b.WriteString("\n")
	}
	return []byte(b.String())
}
