package roll

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"
)

// Limits on a roll's size: it is read whole into memory.
const (
	maxRollFiles = 10000
	maxRollBytes = 1 << 30
)

// Load reads a roll from fsys, whose root holds roll.xml (or
// roll-<name>.xml), nodes/*.xml, graphs/default/*.xml and files/. source
// names it in messages (a path, or "builtin:base"). Builtin rolls are
// go:embed'ed trees passed here through fs.Sub.
func Load(fsys fs.FS, source string) (*Roll, error) {
	files, err := readTree(fsys)
	if err != nil {
		return nil, fmt.Errorf("roll %s: %w", source, err)
	}
	return fromFiles(source, files)
}

// Open reads a roll from a directory or from an archive (as written by
// Create), without checking a signature: use OpenVerified for rolls from
// elsewhere.
func Open(p string) (*Roll, error) {
	st, err := os.Stat(p)
	if err != nil {
		return nil, fmt.Errorf("open roll: %w", err)
	}
	if st.IsDir() {
		return Load(os.DirFS(p), p)
	}
	a, err := ReadArchive(p)
	if err != nil {
		return nil, err
	}
	return fromFiles(p, a.Files)
}

// readTree reads every regular file under fsys into memory.
func readTree(fsys fs.FS) (map[string][]byte, error) {
	files := map[string][]byte{}
	total := 0
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		if !d.Type().IsRegular() {
			return fmt.Errorf("%s: not a regular file or directory", p)
		}
		if len(files) >= maxRollFiles {
			return fmt.Errorf("more than %d files", maxRollFiles)
		}
		f, err := fsys.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		b, err := io.ReadAll(io.LimitReader(f, maxRollBytes-int64(total)+1))
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		total += len(b)
		if total > maxRollBytes {
			return fmt.Errorf("larger than %d bytes", maxRollBytes)
		}
		files[p] = b
		return nil
	})
	return files, err
}

// fromFiles interprets a roll's files (paths relative to its root, slash
// separated).
func fromFiles(source string, files map[string][]byte) (*Roll, error) {
	wrap := func(err error) error { return fmt.Errorf("roll %s: %w", source, err) }
	var manifests []string
	for p := range files {
		if !fs.ValidPath(p) {
			return nil, wrap(fmt.Errorf("bad path %q", p))
		}
		if !strings.Contains(p, "/") && (p == "roll.xml" || strings.HasPrefix(p, "roll-") && strings.HasSuffix(p, ".xml")) {
			manifests = append(manifests, p)
		}
	}
	sort.Strings(manifests)
	switch len(manifests) {
	case 0:
		return nil, wrap(errors.New("no roll.xml"))
	case 1:
	default:
		return nil, wrap(fmt.Errorf("more than one manifest: %s", strings.Join(manifests, ", ")))
	}
	m, err := parseManifest(manifests[0], files[manifests[0]])
	if err != nil {
		return nil, wrap(err)
	}
	if want := "roll-" + m.Name + ".xml"; manifests[0] != "roll.xml" && manifests[0] != want {
		return nil, wrap(posErr(manifests[0], "manifest names roll %s; want the file called %s", m.Name, want))
	}
	r := &Roll{Manifest: m, Source: source, Nodes: map[string]*Node{}, Extends: map[string]*Node{},
		Replaces: map[string]*Node{}, Files: map[string][]byte{}, ManifestFile: manifests[0]}
	for p, b := range files {
		if strings.HasPrefix(p, "files/") || strings.HasPrefix(p, "bin/") {
			r.Files[p] = b
		}
	}
	paths := make([]string, 0, len(files))
	for p := range files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		dir, base := path.Split(p)
		switch {
		case p == manifests[0], strings.HasPrefix(p, "files/"), strings.HasPrefix(p, "bin/"):
		case dir == "nodes/":
			if !strings.HasSuffix(base, ".xml") {
				return nil, wrap(posErr(p, "not a node file (want nodes/NAME.xml)"))
			}
			name := strings.TrimSuffix(base, ".xml")
			dst := r.Nodes
			switch {
			case strings.HasPrefix(name, "extend-"):
				name, dst = strings.TrimPrefix(name, "extend-"), r.Extends
			case strings.HasPrefix(name, "replace-"):
				name, dst = strings.TrimPrefix(name, "replace-"), r.Replaces
			}
			if err := ValidName(name); err != nil {
				return nil, wrap(posErr(p, "node %v", err))
			}
			n, err := parseNode(m.Name, p, name, files[p], r.Files)
			if err != nil {
				return nil, wrap(err)
			}
			dst[name] = n
		case strings.HasPrefix(p, "graphs/"):
			if dir != "graphs/default/" || !strings.HasSuffix(base, ".xml") {
				return nil, wrap(posErr(p, "not a graph file (want graphs/default/NAME.xml)"))
			}
			es, os, err := parseGraph(m.Name, p, files[p])
			if err != nil {
				return nil, wrap(err)
			}
			r.Edges = append(r.Edges, es...)
			r.Orders = append(r.Orders, os...)
		case strings.HasPrefix(p, "nodes/"):
			return nil, wrap(posErr(p, "node files live directly in nodes/"))
		case !strings.Contains(p, "/") && (strings.HasPrefix(base, "README") || strings.HasPrefix(base, "LICENSE") || p == SumsFile || p == SigFile):
		default:
			return nil, wrap(posErr(p, "unexpected file: a roll holds a manifest, nodes/, graphs/default/, files/ and bin/"))
		}
	}
	return r, nil
}

// LoadEach reads every top-level directory of fsys as a roll, by name
// (the built-in rolls: one go:embed'ed tree with a directory per roll).
// source prefixes each roll's source in messages ("builtin" gives
// "builtin:base").
func LoadEach(fsys fs.FS, source string) ([]*Roll, error) {
	ents, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, fmt.Errorf("rolls %s: %w", source, err)
	}
	var rs []*Roll
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		sub, err := fs.Sub(fsys, e.Name())
		if err != nil {
			return nil, err
		}
		r, err := Load(sub, source+":"+e.Name())
		if err != nil {
			return nil, err
		}
		if r.Name != e.Name() {
			return nil, fmt.Errorf("roll %s:%s: its manifest names it %s", source, e.Name(), r.Name)
		}
		rs = append(rs, r)
	}
	return rs, nil
}
