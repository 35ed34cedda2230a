package ec2

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

// Filters reads Filter.N.Name and Filter.N.Value.M in index order. A
// filter without a name is MissingParameter; one without values is
// InvalidParameterValue, as EC2 answers.
func (p Params) Filters() (Filters, error) {
	items, err := p.List("Filter")
	if err != nil {
		return nil, err
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

// WildcardMatch matches s against an AWS filter pattern: '*' is any run of
// characters (also none), '?' exactly one character, and '\*', '\?', '\\'
// stand for themselves. It works on runes and runs in O(len(pattern) ×
// len(s)) at worst, whatever the pattern.
func WildcardMatch(pattern, s string) bool {
	p := []rune(pattern)
	t := []rune(s)
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
