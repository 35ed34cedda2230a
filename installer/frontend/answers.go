package frontend

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"

	yaml "go.yaml.in/yaml/v3"
)

// Version is the answer file format this installer reads.
const Version = 1

// Answers are everything the frontend installer asks.
type Answers struct {
	Version int
	Cluster struct {
		Name, FQDN, Contact string
	}
	Public struct {
		Interface string
		DHCP      bool
		Address   string // dotted quad (static only)
		Netmask   string
		Gateway   string
		DNS       []string
	}
	Private struct {
		Interface string
		Address   string // default 10.1.1.1
		Netmask   string // default 255.255.255.0
		Nodes     int    // machines the rack will hold: the subnet must have room for them
	}
	Time struct {
		Zone string
		NTP  []string
	}
	Admin struct {
		Password     string // plain; hashed before it is written anywhere
		PasswordHash string // pbkdf2-sha256$..., as SaveAnswers writes it
		SSHKey       string
	}
	Disk struct {
		Device   string // /dev/vda, or an image file
		DataSize string // "" or "rest": the rest of the disk; else e.g. 20GiB
	}
	Rolls []string
}

// Defaults are the answers before anyone answers: Rocks' private network
// 10.1.1.1/24, UTC, the built-in rolls.
func Defaults() Answers {
	var a Answers
	a.Version = Version
	a.Private.Address = "10.1.1.1"
	a.Private.Netmask = "255.255.255.0"
	a.Private.Nodes = 1
	a.Time.Zone = "UTC"
	a.Disk.DataSize = "rest"
	a.Rolls = []string{"base", "frontend", "compute"}
	return a
}

// Error is one problem with one answer.
type Error struct {
	Path string // "public.address"
	Line int    // in the answer file; 0 when not from a file
	Msg  string
}

func (e Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("line %d: %s: %s", e.Line, e.Path, e.Msg)
	}
	return e.Path + ": " + e.Msg
}

// Errors are all the problems found at once.
type Errors []Error

func (es Errors) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d problem(s) in the answers:", len(es))
	for _, e := range es {
		b.WriteString("\n  " + e.Error())
	}
	return b.String()
}

// Err returns es as an error, nil when empty.
func (es Errors) Err() error {
	if len(es) == 0 {
		return nil
	}
	// In file order; what is missing (no line) comes last.
	key := func(e Error) int {
		if e.Line == 0 {
			return 1 << 30
		}
		return e.Line
	}
	sort.SliceStable(es, func(i, j int) bool { return key(es[i]) < key(es[j]) })
	return es
}

// Kind is the YAML type of a field.
type Kind int

const (
	KindString Kind = iota
	KindBool
	KindInt
	KindList // list of strings
)

func (k Kind) String() string {
	return [...]string{"a string", "true or false", "an integer", "a list of strings"}[k]
}

// Field is one answer: where it lives in the file, its type, whether it is
// required, and how the screens and the file read and set it.
type Field struct {
	Path  string
	Kind  Kind
	Label string // what the screens call it
	// Required says whether the field must be given (it may depend on
	// other answers: the static address only without DHCP).
	Required func(a *Answers) bool
	Get      func(a *Answers) string
	// Set parses and stores a value; it returns why the value is wrong.
	Set func(a *Answers, v string) error
}

func always(*Answers) bool { return true }
func never(*Answers) bool  { return false }
func static(a *Answers) bool {
	return !a.Public.DHCP
}

func str(p func(a *Answers) *string, check func(string) error) (func(*Answers) string, func(*Answers, string) error) {
	return func(a *Answers) string { return *p(a) },
		func(a *Answers, v string) error {
			v = strings.TrimSpace(v)
			if check != nil && v != "" {
				if err := check(v); err != nil {
					return err
				}
			}
			*p(a) = v
			return nil
		}
}

func list(p func(a *Answers) *[]string, check func(string) error) (func(*Answers) string, func(*Answers, string) error) {
	return func(a *Answers) string { return strings.Join(*p(a), ", ") },
		func(a *Answers, v string) error {
			var out []string
			for _, s := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' }) {
				if check != nil {
					if err := check(s); err != nil {
						return err
					}
				}
				out = append(out, s)
			}
			*p(a) = out
			return nil
		}
}

// Fields is the answer file's schema, in the order the screens ask.
func Fields() []Field {
	mk := func(path string, kind Kind, label string, req func(*Answers) bool,
		get func(*Answers) string, set func(*Answers, string) error) Field {
		return Field{Path: path, Kind: kind, Label: label, Required: req, Get: get, Set: set}
	}
	var fs []Field
	add := func(f Field) { fs = append(fs, f) }
	g, s := func(a *Answers) string { return strconv.Itoa(a.Version) }, func(a *Answers, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n != Version {
			return fmt.Errorf("this installer reads version %d answer files", Version)
		}
		a.Version = n
		return nil
	}
	add(mk("version", KindInt, "Answer file version", always, g, s))
	g, s = str(func(a *Answers) *string { return &a.Cluster.Name }, checkClusterName)
	add(mk("cluster.name", KindString, "Cluster name", always, g, s))
	g, s = str(func(a *Answers) *string { return &a.Cluster.FQDN }, checkFQDN)
	add(mk("cluster.fqdn", KindString, "Public FQDN", always, g, s))
	g, s = str(func(a *Answers) *string { return &a.Cluster.Contact }, nil)
	add(mk("cluster.contact", KindString, "Contact", never, g, s))

	g, s = str(func(a *Answers) *string { return &a.Public.Interface }, checkIfName)
	add(mk("public.interface", KindString, "Public interface", always, g, s))
	add(mk("public.dhcp", KindBool, "Use DHCP", never,
		func(a *Answers) string { return strconv.FormatBool(a.Public.DHCP) },
		func(a *Answers, v string) error {
			b, err := strconv.ParseBool(strings.TrimSpace(v))
			if err != nil {
				return errors.New("want true or false")
			}
			a.Public.DHCP = b
			return nil
		}))
	g, s = str(func(a *Answers) *string { return &a.Public.Address }, checkIPv4)
	add(mk("public.address", KindString, "Address", static, g, s))
	g, s = str(func(a *Answers) *string { return &a.Public.Netmask }, checkNetmask)
	add(mk("public.netmask", KindString, "Netmask", static, g, s))
	g, s = str(func(a *Answers) *string { return &a.Public.Gateway }, checkIPv4)
	add(mk("public.gateway", KindString, "Gateway", never, g, s))
	g, s = list(func(a *Answers) *[]string { return &a.Public.DNS }, checkIPv4)
	add(mk("public.dns", KindList, "DNS servers", never, g, s))

	g, s = str(func(a *Answers) *string { return &a.Private.Interface }, checkIfName)
	add(mk("private.interface", KindString, "Private interface", always, g, s))
	g, s = str(func(a *Answers) *string { return &a.Private.Address }, checkIPv4)
	add(mk("private.address", KindString, "Address", always, g, s))
	g, s = str(func(a *Answers) *string { return &a.Private.Netmask }, checkNetmask)
	add(mk("private.netmask", KindString, "Netmask", always, g, s))
	add(mk("private.nodes", KindInt, "Nodes in the rack", never,
		func(a *Answers) string { return strconv.Itoa(a.Private.Nodes) },
		func(a *Answers, v string) error {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil || n < 1 {
				return errors.New("want a whole number of nodes, at least 1")
			}
			a.Private.Nodes = n
			return nil
		}))

	g, s = str(func(a *Answers) *string { return &a.Time.Zone }, checkZone)
	add(mk("time.zone", KindString, "Time zone", always, g, s))
	g, s = list(func(a *Answers) *[]string { return &a.Time.NTP }, checkHost)
	add(mk("time.ntp", KindList, "NTP servers", never, g, s))

	g, s = str(func(a *Answers) *string { return &a.Admin.Password }, checkPassword)
	add(mk("admin.password", KindString, "Admin password", func(a *Answers) bool { return a.Admin.PasswordHash == "" }, g, s))
	g, s = str(func(a *Answers) *string { return &a.Admin.PasswordHash }, checkPasswordHash)
	add(mk("admin.passwordHash", KindString, "Admin password hash", never, g, s))
	g, s = str(func(a *Answers) *string { return &a.Admin.SSHKey }, checkSSHKey)
	add(mk("admin.sshKey", KindString, "SSH public key", never, g, s))

	g, s = str(func(a *Answers) *string { return &a.Disk.Device }, checkDevice)
	add(mk("disk.device", KindString, "Target disk", always, g, s))
	g, s = str(func(a *Answers) *string { return &a.Disk.DataSize }, checkSize)
	add(mk("disk.dataSize", KindString, "Data partition size", never, g, s))

	g, s = list(func(a *Answers) *[]string { return &a.Rolls }, checkRollName)
	add(mk("rolls", KindList, "Rolls", always, g, s))
	return fs
}

// FieldByPath finds a field of the schema.
func FieldByPath(path string) (Field, bool) {
	for _, f := range Fields() {
		if f.Path == path {
			return f, true
		}
	}
	return Field{}, false
}

// Parse reads an answer file. Every problem it can see without looking at
// the machine (YAML syntax, unknown keys, wrong types, bad values, missing
// keys) is returned at once as Errors, each with its path and line.
func Parse(data []byte) (Answers, error) {
	a := Defaults()
	a.Version = 0
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil && !errors.Is(err, io.EOF) {
		return a, Errors{{Path: "(file)", Msg: "not YAML: " + err.Error()}}
	}
	var errs Errors
	if len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return a, Errors{{Path: "(file)", Line: doc.Line, Msg: "want a mapping of answers (version: 1, cluster: ..., ...)"}}
	}
	byPath := map[string]Field{}
	prefixes := map[string]bool{}
	for _, f := range Fields() {
		byPath[f.Path] = f
		for p := f.Path; strings.Contains(p, "."); {
			p = p[:strings.LastIndex(p, ".")]
			prefixes[p] = true
		}
	}
	seen := map[string]bool{}
	var walk func(n *yaml.Node, prefix string)
	walk = func(n *yaml.Node, prefix string) {
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			path := k.Value
			if prefix != "" {
				path = prefix + "." + k.Value
			}
			if seen[path] {
				errs = append(errs, Error{path, k.Line, "given twice"})
				continue
			}
			seen[path] = true
			if prefixes[path] {
				if v.Kind != yaml.MappingNode {
					errs = append(errs, Error{path, v.Line, "want a mapping"})
					continue
				}
				walk(v, path)
				continue
			}
			f, ok := byPath[path]
			if !ok {
				errs = append(errs, Error{path, k.Line, "unknown key" + suggest(path, byPath)})
				continue
			}
			val, err := scalar(v, f.Kind)
			if err == nil {
				err = f.Set(&a, val)
			}
			if err != nil {
				errs = append(errs, Error{path, v.Line, err.Error()})
			}
		}
	}
	walk(doc.Content[0], "")
	for _, f := range Fields() {
		if !seen[f.Path] && f.Required(&a) && !hasDefault(f.Path) {
			errs = append(errs, Error{f.Path, 0, "missing"})
		}
	}
	return a, errs.Err()
}

// hasDefault: the keys Defaults fills need not be in the file.
func hasDefault(path string) bool {
	switch path {
	case "private.address", "private.netmask", "time.zone", "rolls":
		return true
	}
	return false
}

func suggest(path string, byPath map[string]Field) string {
	last := path[strings.LastIndex(path, ".")+1:]
	for p := range byPath {
		if strings.EqualFold(p[strings.LastIndex(p, ".")+1:], last) && p != path {
			return " (did you mean " + p + "?)"
		}
	}
	return ""
}

// scalar returns the node's value as the field's text form, checking its
// YAML type.
func scalar(v *yaml.Node, k Kind) (string, error) {
	want := func() error { return fmt.Errorf("want %s, got %s", k, describe(v)) }
	switch k {
	case KindList:
		if v.Kind != yaml.SequenceNode {
			return "", want()
		}
		var out []string
		for _, e := range v.Content {
			if e.Kind != yaml.ScalarNode || e.Tag != "!!str" {
				return "", want()
			}
			out = append(out, e.Value)
		}
		return strings.Join(out, ","), nil
	}
	if v.Kind != yaml.ScalarNode {
		return "", want()
	}
	switch {
	case k == KindString && v.Tag == "!!str",
		k == KindBool && v.Tag == "!!bool",
		k == KindInt && v.Tag == "!!int":
		return v.Value, nil
	}
	return "", want()
}

func describe(v *yaml.Node) string {
	switch v.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	switch v.Tag {
	case "!!int":
		return "the integer " + v.Value
	case "!!bool":
		return "the boolean " + v.Value
	case "!!null":
		return "nothing"
	case "!!float":
		return "the number " + v.Value
	}
	return strconv.Quote(v.Value)
}

// Marshal writes answers as an answer file Parse reads back. The plain
// password is never written: it is replaced by its hash.
func Marshal(a Answers) ([]byte, error) {
	if a.Admin.Password != "" {
		h, err := HashPassword(a.Admin.Password)
		if err != nil {
			return nil, err
		}
		a.Admin.PasswordHash, a.Admin.Password = h, ""
	}
	root := &yaml.Node{Kind: yaml.MappingNode}
	maps := map[string]*yaml.Node{"": root}
	for _, f := range Fields() {
		val := f.Get(&a)
		if val == "" && f.Path != "cluster.contact" {
			continue
		}
		if f.Path == "public.dhcp" && !a.Public.DHCP {
			continue
		}
		parent, key := "", f.Path
		if i := strings.LastIndex(f.Path, "."); i >= 0 {
			parent, key = f.Path[:i], f.Path[i+1:]
		}
		m, ok := maps[parent]
		if !ok {
			m = &yaml.Node{Kind: yaml.MappingNode}
			root.Content = append(root.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: parent}, m)
			maps[parent] = m
		}
		var v *yaml.Node
		switch f.Kind {
		case KindList:
			v = &yaml.Node{Kind: yaml.SequenceNode, Style: yaml.FlowStyle}
			for _, s := range strings.Split(val, ", ") {
				v.Content = append(v.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s})
			}
		case KindInt:
			v = &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: val}
		case KindBool:
			v = &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: val}
		default:
			v = &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: val}
		}
		m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: key}, v)
	}
	var b bytes.Buffer
	b.WriteString("# ironbark frontend answer file (ironbark install --answers FILE)\n")
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(root); err != nil {
		return nil, err
	}
	return b.Bytes(), enc.Close()
}
