package roll

import (
	"fmt"
	"path"
	"regexp"
	"strconv"
	"strings"
	"text/template"
)

// Template is a node file's text (a file's name or content, a post
// body) as a Go template. The dot is the host's attributes: {{.name}} reads
// one (a missing one is an error, so a typo does not become an empty
// string); {{attr "name" "default"}} reads one that may be missing. Errors
// name the file and line of the node file.
type Template struct {
	t    *template.Template
	file string
	line int // the node file's line of the template's first line
}

// newTemplate parses text found at file:line.
func newTemplate(file string, line int, text string) (*Template, error) {
	t, err := template.New("t").Option("missingkey=error").Funcs(template.FuncMap{
		"attr": func(string, ...string) string { return "" },
	}).Parse(text)
	tp := &Template{t: t, file: file, line: line}
	if err != nil {
		return nil, tp.posErr(err)
	}
	return tp, nil
}

var templateErrRE = regexp.MustCompile(`^template: t:(\d+)(?::\d+)?: (?:executing "t" )?(.*)$`)

// posErr turns text/template's error into one at the node file's line.
func (tp *Template) posErr(err error) error {
	line, msg := tp.line, err.Error()
	if m := templateErrRE.FindStringSubmatch(msg); m != nil {
		n, _ := strconv.Atoi(m[1])
		line, msg = tp.line+n-1, m[2]
	}
	return posErr(fmt.Sprintf("%s:%d", tp.file, line), "template: %s", msg)
}

// Render executes the template with attrs.
func (tp *Template) Render(attrs map[string]string) (string, error) {
	c, err := tp.t.Clone()
	if err != nil {
		return "", err
	}
	c.Funcs(template.FuncMap{"attr": func(name string, def ...string) string {
		if v, ok := attrs[name]; ok {
			return v
		}
		if len(def) > 0 {
			return def[0]
		}
		return ""
	}})
	var b strings.Builder
	if err := c.Execute(&b, attrs); err != nil {
		return "", tp.posErr(err)
	}
	return b.String(), nil
}

// bodyLine is the line a body's first line is on after trimBody: the line
// after the tag when the text begins with a newline.
func bodyLine(e *element) int {
	if strings.HasPrefix(strings.TrimPrefix(e.Text, "\r"), "\n") {
		return e.Line + 1
	}
	return e.Line
}

func splitList(s string) []string {
	var r []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			r = append(r, f)
		}
	}
	return r
}

// parseGuard reads arch=, os=, release= and cond= of e.
func parseGuard(pos string, e *element) (Guard, error) {
	var g Guard
	if v, ok := e.attr("arch"); ok {
		g.Arch = splitList(v)
	}
	if v, ok := e.attr("os"); ok {
		g.OS = splitList(v)
	}
	if v, ok := e.attr("release"); ok {
		g.Release = splitList(v)
	}
	v, _ := e.attr("cond")
	c, err := ParseCond(v)
	if err != nil {
		return g, posErr(pos, "<%s>: %v", e.Name, err)
	}
	g.Cond = c
	return g, nil
}

var guardAttrs = []string{"arch", "os", "release", "cond"}

func withGuard(names ...string) []string { return append(names, guardAttrs...) }

// trimBody drops the newline after the opening tag and the indentation
// before the closing one, so that
//
//	<file name="/etc/x">
//	a=1
//	</file>
//
// is "a=1\n".
func trimBody(s string) string {
	s = strings.TrimPrefix(strings.TrimPrefix(s, "\r"), "\n")
	if i := strings.LastIndexByte(s, '\n'); i >= 0 && strings.Trim(s[i+1:], " \t\r") == "" {
		s = s[:i+1]
	}
	return s
}

// parseNode reads a node file. file is its path inside the roll; name the
// node it defines (for extend-/replace-, the node they change).
func parseNode(rollName, file, name string, data []byte, files map[string][]byte) (*Node, error) {
	root, err := readXML(file, data)
	if err != nil {
		return nil, err
	}
	at := func(e *element) string { return fmt.Sprintf("%s:%d", file, e.Line) }
	if root.Name != "kickstart" && root.Name != "node" {
		return nil, posErr(at(root), "root element <%s>: want <kickstart> or <node>", root.Name)
	}
	if err := root.checkAttrs(file, "roll", "interface"); err != nil {
		return nil, err
	}
	if strings.TrimSpace(root.Text) != "" {
		return nil, posErr(at(root), "text directly inside <%s>; put it in an element", root.Name)
	}
	n := &Node{Name: name, Roll: rollName, File: file, raw: data}
	for _, e := range root.Children {
		pos := at(e)
		switch e.Name {
		case "description":
			if err := e.noChildren(file); err != nil {
				return nil, err
			}
			if err := e.checkAttrs(file); err != nil {
				return nil, err
			}
			n.Description = strings.Join(strings.Fields(e.Text), " ")
		case "copyright", "changelog", "si_copyright":
			// Rocks' boilerplate: kept out of the profile.
		case "package":
			if err := e.noChildren(file); err != nil {
				return nil, err
			}
			if err := e.checkAttrs(file, withGuard()...); err != nil {
				return nil, err
			}
			g, err := parseGuard(pos, e)
			if err != nil {
				return nil, err
			}
			names := strings.Fields(e.Text)
			if len(names) == 0 {
				return nil, posErr(pos, "empty <package>")
			}
			for _, p := range names {
				if !debPackageRE.MatchString(p) {
					return nil, posErr(pos, "<package>: %q is not a Debian package name", p)
				}
			}
			n.Items = append(n.Items, Item{Kind: ItemPackage, Guard: g, Pos: pos, Packages: names})
		case "file":
			it, err := parseFile(pos, file, e, files)
			if err != nil {
				return nil, err
			}
			n.Items = append(n.Items, it)
		case "post":
			if err := e.noChildren(file); err != nil {
				return nil, err
			}
			if err := e.checkAttrs(file, withGuard("interpreter")...); err != nil {
				return nil, err
			}
			g, err := parseGuard(pos, e)
			if err != nil {
				return nil, err
			}
			interp, _ := e.attr("interpreter")
			if interp != "" && !strings.HasPrefix(interp, "/") {
				return nil, posErr(pos, "<post interpreter=%q>: want an absolute path", interp)
			}
			t, err := newTemplate(file, bodyLine(e), trimBody(e.Text))
			if err != nil {
				return nil, err
			}
			n.Items = append(n.Items, Item{Kind: ItemPost, Guard: g, Pos: pos, Text: t, Interpreter: interp})
		case "pre":
			return nil, posErr(pos, "unknown tag <pre>: appliances are built into images, not kickstarted; use <post>")
		default:
			return nil, posErr(pos, "unknown tag <%s>", e.Name)
		}
	}
	return n, nil
}

func parseFile(pos, file string, e *element, files map[string][]byte) (Item, error) {
	if err := e.noChildren(file); err != nil {
		return Item{}, err
	}
	if err := e.checkAttrs(file, withGuard("name", "perms", "owner", "mode", "src")...); err != nil {
		return Item{}, err
	}
	g, err := parseGuard(pos, e)
	if err != nil {
		return Item{}, err
	}
	it := Item{Kind: ItemFile, Guard: g, Pos: pos, Perms: 0o644}
	name, _ := e.attr("name")
	if name == "" {
		return Item{}, posErr(pos, "<file> without name=")
	}
	if !strings.HasPrefix(name, "/") && !strings.HasPrefix(name, "{{") {
		return Item{}, posErr(pos, "<file name=%q>: want an absolute path", name)
	}
	if it.Name, err = newTemplate(file, e.Line, name); err != nil {
		return Item{}, err
	}
	if p, ok := e.attr("perms"); ok {
		v, err := strconv.ParseUint(p, 8, 32)
		if err != nil || v > 0o7777 {
			return Item{}, posErr(pos, "<file perms=%q>: want octal permissions like 0644", p)
		}
		it.Perms = uint32(v)
	}
	if o, ok := e.attr("owner"); ok {
		o = strings.Replace(o, ".", ":", 1) // Rocks wrote root.root
		if !ownerRE.MatchString(o) {
			return Item{}, posErr(pos, "<file owner=%q>: want user or user:group", o)
		}
		it.Owner = o
	}
	switch m, _ := e.attr("mode"); m {
	case "", "create":
	case "append":
		it.Append = true
		if _, ok := e.attr("perms"); !ok {
			it.Perms = 0 // keep the existing file's mode
		}
	default:
		return Item{}, posErr(pos, "<file mode=%q>: want append or nothing", m)
	}
	src, hasSrc := e.attr("src")
	body := trimBody(e.Text)
	if hasSrc {
		if strings.TrimSpace(e.Text) != "" {
			return Item{}, posErr(pos, "<file src=%q> has content too; give one or the other", src)
		}
		clean := path.Clean(src)
		if path.IsAbs(src) || clean != src || !(strings.HasPrefix(clean, "files/") || strings.HasPrefix(clean, "bin/")) {
			return Item{}, posErr(pos, "<file src=%q>: want a path under the roll's files/ or bin/ directory", src)
		}
		// files/ must be in the roll; bin/ may be left for the builder to
		// supply (the frontend's own binaries, which a built-in roll
		// cannot embed).
		if _, ok := files[clean]; !ok && strings.HasPrefix(clean, "files/") {
			return Item{}, posErr(pos, "<file src=%q>: the roll has no such file", src)
		}
		it.Src = clean
		return it, nil
	}
	if it.Text, err = newTemplate(file, bodyLine(e), body); err != nil {
		return Item{}, err
	}
	return it, nil
}

var ownerRE = regexp.MustCompile(`^[a-z_][a-z0-9_-]*(:[a-z_][a-z0-9_-]*)?$`)

// parseGraph reads a graph file's edges and orders.
func parseGraph(rollName, file string, data []byte) ([]Edge, []Order, error) {
	root, err := readXML(file, data)
	if err != nil {
		return nil, nil, err
	}
	at := func(e *element) string { return fmt.Sprintf("%s:%d", file, e.Line) }
	if root.Name != "graph" {
		return nil, nil, posErr(at(root), "root element <%s>: want <graph>", root.Name)
	}
	if err := root.checkAttrs(file, "roll"); err != nil {
		return nil, nil, err
	}
	var edges []Edge
	var orders []Order
	for _, e := range root.Children {
		pos := at(e)
		switch e.Name {
		case "description", "copyright", "changelog", "si_copyright":
		case "edge":
			es, err := parseEdge(rollName, file, pos, e)
			if err != nil {
				return nil, nil, err
			}
			edges = append(edges, es...)
		case "order":
			os, err := parseOrder(rollName, file, pos, e)
			if err != nil {
				return nil, nil, err
			}
			orders = append(orders, os...)
		default:
			return nil, nil, posErr(pos, "unknown tag <%s>", e.Name)
		}
	}
	return edges, orders, nil
}

// pairs expands an edge or order element: from/to attributes and
// <from>/<to> children (each child's guard ANDs with the element's).
func pairs(file, pos string, e *element, aName, bName string) (froms, tos []guarded, g Guard, err error) {
	if err = e.checkAttrs(file, withGuard(aName, bName)...); err != nil {
		return
	}
	if g, err = parseGuard(pos, e); err != nil {
		return
	}
	if v, ok := e.attr(aName); ok {
		froms = append(froms, guarded{name: strings.TrimSpace(v), pos: pos})
	}
	if v, ok := e.attr(bName); ok {
		tos = append(tos, guarded{name: strings.TrimSpace(v), pos: pos})
	}
	if strings.TrimSpace(e.Text) != "" {
		err = posErr(pos, "text directly inside <%s>", e.Name)
		return
	}
	for _, c := range e.Children {
		cpos := fmt.Sprintf("%s:%d", file, c.Line)
		if c.Name != aName && c.Name != bName {
			err = posErr(cpos, "unknown tag <%s> inside <%s>", c.Name, e.Name)
			return
		}
		if err = c.noChildren(file); err != nil {
			return
		}
		if err = c.checkAttrs(file, guardAttrs...); err != nil {
			return
		}
		var cg Guard
		if cg, err = parseGuard(cpos, c); err != nil {
			return
		}
		x := guarded{name: strings.TrimSpace(c.Text), guard: cg, pos: cpos}
		if c.Name == aName {
			froms = append(froms, x)
		} else {
			tos = append(tos, x)
		}
	}
	if len(froms) == 0 || len(tos) == 0 {
		err = posErr(pos, "<%s> needs both a %s and a %s", e.Name, aName, bName)
	}
	return
}

type guarded struct {
	name  string
	guard Guard
	pos   string
}

func parseEdge(rollName, file, pos string, e *element) ([]Edge, error) {
	froms, tos, g, err := pairs(file, pos, e, "from", "to")
	if err != nil {
		return nil, err
	}
	var r []Edge
	for _, f := range froms {
		for _, t := range tos {
			for _, n := range []guarded{f, t} {
				if err := ValidName(n.name); err != nil {
					return nil, posErr(n.pos, "<edge>: %v", err)
				}
			}
			p := t.pos
			if len(tos) == 1 {
				p = f.pos
			}
			r = append(r, Edge{From: f.name, To: t.name, Guard: g.and(f.guard).and(t.guard), Roll: rollName, Pos: p})
		}
	}
	return r, nil
}

func parseOrder(rollName, file, pos string, e *element) ([]Order, error) {
	heads, tails, g, err := pairs(file, pos, e, "head", "tail")
	if err != nil {
		return nil, err
	}
	var r []Order
	for _, h := range heads {
		for _, t := range tails {
			for _, n := range []guarded{h, t} {
				if n.name == Head || n.name == Tail {
					continue
				}
				if err := ValidName(n.name); err != nil {
					return nil, posErr(n.pos, "<order>: %v", err)
				}
			}
			if h.name == t.name {
				return nil, posErr(pos, "<order>: %s before itself", h.name)
			}
			p := t.pos
			if len(tails) == 1 {
				p = h.pos
			}
			r = append(r, Order{Head: h.name, Tail: t.name, Guard: g.and(h.guard).and(t.guard), Roll: rollName, Pos: p})
		}
	}
	return r, nil
}

// parseManifest reads roll.xml.
func parseManifest(file string, data []byte) (Manifest, error) {
	var m Manifest
	root, err := readXML(file, data)
	if err != nil {
		return m, err
	}
	at := func(e *element) string { return fmt.Sprintf("%s:%d", file, e.Line) }
	if root.Name != "roll" {
		return m, posErr(at(root), "root element <%s>: want <roll>", root.Name)
	}
	if err := root.checkAttrs(file, "name", "version", "release", "arch", "os", "summary", "interface"); err != nil {
		return m, err
	}
	get := func(e *element, dst *string, name string) {
		if v, ok := e.attr(name); ok {
			*dst = strings.TrimSpace(v)
		}
	}
	get(root, &m.Name, "name")
	get(root, &m.Version, "version")
	get(root, &m.Release, "release")
	get(root, &m.Arch, "arch")
	get(root, &m.OS, "os")
	get(root, &m.Summary, "summary")
	for _, e := range root.Children {
		pos := at(e)
		switch e.Name {
		case "info": // Rocks' <info version= release= arch= os=/>
			if err := e.checkAttrs(file, "version", "release", "arch", "os", "bootable"); err != nil {
				return m, err
			}
			get(e, &m.Version, "version")
			get(e, &m.Release, "release")
			get(e, &m.Arch, "arch")
			get(e, &m.OS, "os")
		case "summary", "description":
			if err := e.noChildren(file); err != nil {
				return m, err
			}
			m.Summary = strings.Join(strings.Fields(e.Text), " ")
		case "attr":
			k, v, err := parseAttrElem(file, pos, e)
			if err != nil {
				return m, err
			}
			if m.Attrs == nil {
				m.Attrs = map[string]string{}
			}
			if _, dup := m.Attrs[k]; dup {
				return m, posErr(pos, "attribute %s given twice", k)
			}
			m.Attrs[k] = v
		case "appliance":
			a, err := parseAppliance(file, pos, e)
			if err != nil {
				return m, err
			}
			m.Appliances = append(m.Appliances, a)
		case "color", "iso", "rpm", "author", "copyright", "changelog":
			// Rocks' roll-*.xml build details; nothing to do here.
		default:
			return m, posErr(pos, "unknown tag <%s>", e.Name)
		}
	}
	pos := at(root)
	if err := ValidName(m.Name); err != nil {
		return m, posErr(pos, "roll: %v", err)
	}
	for what, v := range map[string]string{"version": m.Version, "arch": m.Arch, "os": m.OS} {
		if v == "" {
			return m, posErr(pos, "roll %s: no %s", m.Name, what)
		}
	}
	if m.Release == "" {
		m.Release = "0"
	}
	for i := range m.Appliances {
		m.Appliances[i].Roll = m.Name
	}
	return m, nil
}

var applianceRE = regexp.MustCompile(`^[a-z][a-z0-9]*(-[a-z0-9]+)*$`)

// ValidApplianceName reports whether s can name an appliance: it starts
// host names (compute-kvm-0-1), so letters, digits and inner dashes.
func ValidApplianceName(s string) error {
	if !applianceRE.MatchString(s) || len(s) > 31 {
		return fmt.Errorf("appliance name %q: want up to 31 lower-case letters, digits and inner dashes, starting with a letter", s)
	}
	return nil
}

var attrNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.]{0,127}$`)

// ValidAttrName reports whether s can name an attribute (and so be read in
// a condition).
func ValidAttrName(s string) error {
	if !attrNameRE.MatchString(s) || keywords[s] {
		return fmt.Errorf("attribute name %q: want letters, digits, _ and ., starting with a letter or _", s)
	}
	return nil
}

func parseAttrElem(file, pos string, e *element) (string, string, error) {
	if err := e.checkAttrs(file, "name", "value"); err != nil {
		return "", "", err
	}
	if err := e.noChildren(file); err != nil {
		return "", "", err
	}
	k, _ := e.attr("name")
	if err := ValidAttrName(k); err != nil {
		return "", "", posErr(pos, "<attr>: %v", err)
	}
	v, ok := e.attr("value")
	if !ok {
		v = strings.TrimSpace(e.Text)
	}
	return k, v, nil
}

func parseAppliance(file, pos string, e *element) (Appliance, error) {
	if err := e.checkAttrs(file, "name", "node", "summary"); err != nil {
		return Appliance{}, err
	}
	a := Appliance{Pos: pos}
	a.Name, _ = e.attr("name")
	a.Node, _ = e.attr("node")
	a.Summary, _ = e.attr("summary")
	if err := ValidApplianceName(a.Name); err != nil {
		return a, posErr(pos, "<appliance>: %v", err)
	}
	if a.Node == "" {
		a.Node = a.Name
	}
	if err := ValidName(a.Node); err != nil {
		return a, posErr(pos, "<appliance node=>: %v", err)
	}
	for _, c := range e.Children {
		cpos := fmt.Sprintf("%s:%d", file, c.Line)
		switch c.Name {
		case "attr":
			k, v, err := parseAttrElem(file, cpos, c)
			if err != nil {
				return a, err
			}
			if a.Attrs == nil {
				a.Attrs = map[string]string{}
			}
			a.Attrs[k] = v
		case "summary", "description":
			a.Summary = strings.Join(strings.Fields(c.Text), " ")
		default:
			return a, posErr(cpos, "unknown tag <%s> inside <appliance>", c.Name)
		}
	}
	return a, nil
}
