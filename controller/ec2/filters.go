package ec2

import "strings"

// Filter is one Filter.N of a Describe call: a name and the values of
// which any may match (OR). Values may hold AWS wildcards: '*' for any run
// of characters, '?' for exactly one, and '\' to escape either (or itself).
type Filter struct {
	Name   string
	Values []string
}

// Filters are all of a request's filters; a resource must match every one
// (AND).
type Filters []Filter

// Limits on a request's filters: matching costs the product of the
// values' lengths and the resources' fields, so a request may not make it
// large. EC2 allows 200 values per filter; the rest are generous for any
// real filter (a tag value is at most 256 characters).
const (
	MaxFilters        = 50
	MaxFilterValues   = 200
	MaxFilterValueLen = 1024 // bytes
)

// Filters reads Filter.N.Name and Filter.N.Value.M in index order. A
// filter without a name is MissingParameter; one without values, or
// beyond the limits above, is InvalidParameterValue, as EC2 answers.
func (p Params) Filters() (Filters, error) {
	items, err := p.List("Filter")
	if err != nil {
		return nil, err
	}
	if len(items) > MaxFilters {
		return nil, InvalidParameterValue("The request may contain at most %d filters", MaxFilters)
	}
	out := make(Filters, 0, len(items))
	for _, it := range items {
		if err := it.Check("Name", "Value.N"); err != nil {
			return nil, err
		}
		name, err := it.Required("Name")
		if err != nil {
			return nil, err
		}
		vals, err := it.Strings("Value")
		if err != nil {
			return nil, err
		}
		if len(vals) == 0 {
			return nil, InvalidParameterValue("The filter '%s' requires at least one value", name)
		}
		if len(vals) > MaxFilterValues {
			return nil, InvalidParameterValue("The filter '%s' may have at most %d values", name, MaxFilterValues)
		}
		for _, v := range vals {
			if len(v) > MaxFilterValueLen {
				return nil, InvalidParameterValue("A value of the filter '%s' is longer than %d bytes", name, MaxFilterValueLen)
			}
		}
		out = append(out, Filter{Name: name, Values: vals})
	}
	return out, nil
}

// Match reports whether any of the filter's values matches s.
func (f Filter) Match(s string) bool {
	for _, pat := range f.Values {
		if WildcardMatch(pat, s) {
			return true
		}
	}
	return false
}

// MatchAny reports whether any of the filter's values matches any of ss
// (for multi-valued attributes such as group-id or a resource's tag keys).
func (f Filter) MatchAny(ss ...string) bool {
	for _, s := range ss {
		if f.Match(s) {
			return true
		}
	}
	return false
}

// Get returns the first filter with this name.
func (fs Filters) Get(name string) (Filter, bool) {
	for _, f := range fs {
		if f.Name == name {
			return f, true
		}
	}
	return Filter{}, false
}

// Check answers InvalidParameterValue "The filter 'x' is invalid" for a
// filter whose name matches none of known. Known names may use the same
// wildcards as values, so "tag:*" admits every tag:KEY filter.
func (fs Filters) Check(known ...string) error {
	for _, f := range fs {
		ok := false
		for _, k := range known {
			if WildcardMatch(k, f.Name) {
				ok = true
				break
			}
		}
		if !ok {
			return InvalidParameterValue("The filter '%s' is invalid", f.Name)
		}
	}
	return nil
}

// Matches reports whether a resource passes every filter. attr returns
// the resource's values for a filter name (none: the filter fails); it is
// where callers implement tag:KEY, tag-key and the like.
func (fs Filters) Matches(attr func(name string) []string) bool {
	for _, f := range fs {
		if !f.MatchAny(attr(f.Name)...) {
			return false
		}
	}
	return true
}

// Matcher is a request's filters compiled once: literal values compare
// as strings, wildcard values are split into runes ahead of time.
type Matcher struct {
	filters []compiledFilter
}

type compiledFilter struct {
	name string
	pats []pattern
}

// pattern is one compiled filter value.
type pattern struct {
	literal string // the value itself when it has no wildcard or escape
	runes   []rune // otherwise
}

func compilePattern(v string) pattern {
	if !strings.ContainsAny(v, `*?\`) {
		return pattern{literal: v}
	}
	return pattern{runes: []rune(v)}
}

func (p pattern) match(s string) bool {
	if p.runes == nil {
		return p.literal == s
	}
	return matchRunes(p.runes, []rune(s))
}

// Compile checks the filters' names against known (which may hold
// wildcards, so "tag:*" admits every tag:KEY) and compiles them. A name
// that matches none is InvalidParameterValue "The filter 'x' is invalid".
func (fs Filters) Compile(known ...string) (Matcher, error) {
	if err := fs.Check(known...); err != nil {
		return Matcher{}, err
	}
	m := Matcher{filters: make([]compiledFilter, len(fs))}
	for i, f := range fs {
		cf := compiledFilter{name: f.Name, pats: make([]pattern, len(f.Values))}
		for j, v := range f.Values {
			cf.pats[j] = compilePattern(v)
		}
		m.filters[i] = cf
	}
	return m, nil
}

// Empty reports whether there is no filter (everything matches).
func (m Matcher) Empty() bool { return len(m.filters) == 0 }

// Match reports whether a resource passes every filter (AND); within a
// filter, any value matching any of the resource's values is enough (OR).
// attr returns the resource's values for a filter name.
func (m Matcher) Match(attr func(name string) []string) bool {
	for _, f := range m.filters {
		if !f.matchAny(attr(f.name)) {
			return false
		}
	}
	return true
}

func (f compiledFilter) matchAny(ss []string) bool {
	for _, s := range ss {
		for _, p := range f.pats {
			if p.match(s) {
				return true
			}
		}
	}
	return false
}

// WildcardMatch matches s against an AWS filter pattern: '*' is any run of
// characters (also none), '?' exactly one character, and '\*', '\?', '\\'
// stand for themselves. It works on runes and runs in O(len(pattern) ×
// len(s)) at worst, whatever the pattern.
func WildcardMatch(pattern, s string) bool {
	return matchRunes([]rune(pattern), []rune(s))
}

func matchRunes(p, t []rune) bool {
	pi, ti := 0, 0
	starP, starT := -1, 0
	for ti < len(t) {
		if pi < len(p) {
			switch c := p[pi]; {
			case c == '*':
				starP, starT = pi, ti
				pi++
				continue
			case c == '?':
				pi++
				ti++
				continue
			default:
				lit, w := c, 1
				if c == '\\' && pi+1 < len(p) {
					lit, w = p[pi+1], 2
				}
				if lit == t[ti] {
					pi += w
					ti++
					continue
				}
			}
		}
		if starP < 0 {
			return false
		}
		// Let the last '*' eat one more character and retry after it.
		starT++
		ti = starT
		pi = starP + 1
	}
	for pi < len(p) && p[pi] == '*' {
		pi++
	}
	return pi == len(p)
}
