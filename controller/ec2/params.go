package ec2

import (
	"net/url"
	"sort"
	"strconv"
	"strings"
)

// Params reads the Query parameters of a request, or the part of them
// under one list item (e.g. "IpPermissions.2."), with EC2's errors for
// missing and malformed values. It is a cheap value: copy it freely.
//
// Keys are kept sorted so that a nested scope looks only at its own keys:
// reading a list of lists costs O(n log n) in the number of parameters, not
// O(n²), whatever a client sends.
type Params struct {
	v      url.Values
	keys   []string // the sorted keys that start with prefix
	prefix string
}

// NewParams makes a Params over all of v.
func NewParams(v url.Values) Params {
	keys := make([]string, 0, len(v))
	for k := range v {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return Params{v: v, keys: keys}
}

// Query is NewParams(r.Params): the action's parameters.
func (r *Request) Query() Params { return NewParams(r.Params) }

// Prefix is the scope's prefix ("" at the top, "Filter.2." in an item).
func (p Params) Prefix() string { return p.prefix }

// Name is the full parameter name of name in this scope, as error
// messages spell it ("IpPermissions.1.IpProtocol").
func (p Params) Name(name string) string { return p.prefix + name }

// Len is the number of parameters in this scope.
func (p Params) Len() int { return len(p.keys) }

// Has reports whether the parameter is present (even if empty).
func (p Params) Has(name string) bool {
	_, ok := p.v[p.prefix+name]
	return ok
}

// Lookup returns the parameter's first value and whether it is present.
func (p Params) Lookup(name string) (string, bool) {
	vs, ok := p.v[p.prefix+name]
	if !ok || len(vs) == 0 {
		return "", false
	}
	return vs[0], true
}

// String returns the parameter's value, "" when absent.
func (p Params) String(name string) string {
	s, _ := p.Lookup(name)
	return s
}

// Optional returns the parameter's value, or def when absent or empty.
func (p Params) Optional(name, def string) string {
	if s, ok := p.Lookup(name); ok && s != "" {
		return s
	}
	return def
}

// Required returns the parameter's value; absent or empty is
// MissingParameter.
func (p Params) Required(name string) (string, error) {
	s, ok := p.Lookup(name)
	if !ok || s == "" {
		return "", MissingParameter(p.Name(name))
	}
	return s, nil
}

// Int returns the parameter as an integer, def when absent; a value that
// is not a decimal integer is InvalidParameterValue.
func (p Params) Int(name string, def int64) (int64, error) {
	s, ok := p.Lookup(name)
	if !ok {
		return def, nil
	}
	return p.parseInt(name, s)
}

// RequiredInt is Int without a default: absent is MissingParameter.
func (p Params) RequiredInt(name string) (int64, error) {
	s, ok := p.Lookup(name)
	if !ok || s == "" {
		return 0, MissingParameter(p.Name(name))
	}
	return p.parseInt(name, s)
}

func (p Params) parseInt(name, s string) (int64, error) {
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil {
		return 0, InvalidValue(p.Name(name), s, "Expected an integer.")
	}
	return n, nil
}

// IntRange is Int with bounds: a value outside [lo, hi] is
// InvalidParameterValue.
func (p Params) IntRange(name string, def, lo, hi int64) (int64, error) {
	n, err := p.Int(name, def)
	if err != nil || !p.Has(name) {
		return n, err
	}
	if n < lo || n > hi {
		return 0, InvalidValue(p.Name(name), strconv.FormatInt(n, 10),
			"Parameter must be between "+strconv.FormatInt(lo, 10)+" and "+strconv.FormatInt(hi, 10)+".")
	}
	return n, nil
}

// Bool returns the parameter as a boolean ("true"/"false", any case, as
// the SDKs send; also 1/0), def when absent or empty.
func (p Params) Bool(name string, def bool) (bool, error) {
	s, ok := p.Lookup(name)
	if !ok || s == "" {
		return def, nil
	}
	b, err := strconv.ParseBool(strings.ToLower(strings.TrimSpace(s)))
	if err != nil {
		return false, InvalidValue(p.Name(name), s, "Expected a boolean (true or false).")
	}
	return b, nil
}

// scope returns the sorted keys of p that start with prefix (prefix
// includes p.prefix).
func (p Params) scope(prefix string) []string {
	lo := sort.Search(len(p.keys), func(i int) bool { return p.keys[i] >= prefix })
	hi := lo + sort.Search(len(p.keys)-lo, func(i int) bool {
		return !strings.HasPrefix(p.keys[lo+i], prefix)
	})
	return p.keys[lo:hi]
}

// Sub is the scope under name+"." (for a single nested struct such as
// "Placement.AvailabilityZone": p.Sub("Placement").String("AvailabilityZone")).
func (p Params) Sub(name string) Params {
	pre := p.prefix + name + "."
	return Params{v: p.v, keys: p.scope(pre), prefix: pre}
}

// indexed is one list member found under a prefix.
type indexed struct {
	n    uint64
	text string // the index as sent, to keep "1" and "01" apart
}

func lessIndexed(a, b indexed) bool {
	if a.n != b.n {
		return a.n < b.n
	}
	return a.text < b.text
}

// parseIndex accepts the decimal list index of a flattened list member.
func parseIndex(s string) (uint64, bool) {
	if s == "" || len(s) > 9 {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseUint(s, 10, 64)
	return n, err == nil
}

// Strings reads a flattened list of strings: name.1, name.2, ... in index
// order. Gaps are tolerated (name.1, name.3); a member whose index is not
// a number is UnknownParameter. Absent is an empty list.
func (p Params) Strings(name string) ([]string, error) {
	pre := p.prefix + name + "."
	keys := p.scope(pre)
	if len(keys) == 0 {
		return nil, nil
	}
	idx := make([]indexed, 0, len(keys))
	for _, k := range keys {
		rest := k[len(pre):]
		n, ok := parseIndex(rest)
		if !ok {
			return nil, UnknownParameter(k)
		}
		idx = append(idx, indexed{n: n, text: rest})
	}
	sort.Slice(idx, func(i, j int) bool { return lessIndexed(idx[i], idx[j]) })
	out := make([]string, 0, len(idx))
	for _, ix := range idx {
		out = append(out, p.v.Get(pre+ix.text))
	}
	return out, nil
}

// List reads a flattened list of structs: name.N.Field... Each item is a
// Params scoped to "name.N.", in index order (gaps tolerated). A member
// without a field ("name.1" alone) or with a non-numeric index is
// UnknownParameter. Examples: p.List("IpPermissions"), then on an item
// item.List("IpRanges") and ipr.String("CidrIp"); p.List("TagSpecification")
// then item.List("Tag"); p.List("BlockDeviceMapping") then
// item.Sub("Ebs").Int("VolumeSize", 0).
func (p Params) List(name string) ([]Params, error) {
	pre := p.prefix + name + "."
	keys := p.scope(pre)
	var items []indexed
	for i := 0; i < len(keys); {
		rest := keys[i][len(pre):]
		dot := strings.IndexByte(rest, '.')
		if dot < 0 {
			return nil, UnknownParameter(keys[i])
		}
		n, ok := parseIndex(rest[:dot])
		if !ok {
			return nil, UnknownParameter(keys[i])
		}
		items = append(items, indexed{n: n, text: rest[:dot]})
		// Skip the rest of this item's keys: they are contiguous.
		itemPre := pre + rest[:dot+1]
		i += len(p.scopeOf(keys[i:], itemPre))
	}
	sort.Slice(items, func(i, j int) bool { return lessIndexed(items[i], items[j]) })
	out := make([]Params, 0, len(items))
	for _, it := range items {
		itemPre := pre + it.text + "."
		out = append(out, Params{v: p.v, keys: p.scopeOf(keys, itemPre), prefix: itemPre})
	}
	return out, nil
}

func (p Params) scopeOf(keys []string, prefix string) []string {
	q := Params{keys: keys}
	return q.scope(prefix)
}

// Check reports the first parameter in this scope that matches none of
// the allowed names as UnknownParameter. In an allowed name, a segment "N"
// stands for any list index: "InstanceId.N", "Filter.N.Name",
// "Filter.N.Value.N", "IpPermissions.N.IpRanges.N.CidrIp". Action,
// Version and DryRun are always allowed at the top.
func (p Params) Check(allowed ...string) error {
	for _, k := range p.keys {
		rest := k[len(p.prefix):]
		if p.prefix == "" && (rest == "Action" || rest == "Version" || rest == "DryRun") {
			continue
		}
		ok := false
		for _, a := range allowed {
			if matchParamPattern(a, rest) {
				ok = true
				break
			}
		}
		if !ok {
			return UnknownParameter(k)
		}
	}
	return nil
}

func matchParamPattern(pattern, name string) bool {
	for {
		pseg, prest, pmore := strings.Cut(pattern, ".")
		nseg, nrest, nmore := strings.Cut(name, ".")
		if pseg == "N" {
			if _, ok := parseIndex(nseg); !ok {
				return false
			}
		} else if pseg != nseg {
			return false
		}
		if pmore != nmore {
			return false
		}
		if !pmore {
			return true
		}
		pattern, name = prest, nrest
	}
}
