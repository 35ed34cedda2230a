package controller

import (
	"database/sql"
	"encoding/base64"
	"errors"
	"sort"
	"strconv"
	"strings"

	"ironbark/controller/ec2"
)

// str returns a parameter's value ("" when absent).
func (k *call) str(name string) string { return k.Params.Get(name) }

// required returns a parameter or MissingParameter.
func (k *call) required(name string) (string, error) {
	v := k.Params.Get(name)
	if v == "" {
		return "", ec2.Errorf("MissingParameter", "The request must contain the parameter %s", name)
	}
	return v, nil
}

// list returns the flattened list prefix.1, prefix.2, ... in index order.
func (k *call) list(prefix string) []string {
	type kv struct {
		n int
		v string
	}
	var out []kv
	for key, vs := range k.Params {
		rest, ok := strings.CutPrefix(key, prefix+".")
		if !ok || len(vs) == 0 {
			continue
		}
		n, err := strconv.Atoi(rest)
		if err != nil || n < 1 {
			continue
		}
		out = append(out, kv{n, vs[0]})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].n < out[j].n })
	vals := make([]string, len(out))
	for i, e := range out {
		vals[i] = e.v
	}
	return vals
}

// indices returns the sorted N of every "prefix.N.<anything>" parameter.
func (k *call) indices(prefix string) []int {
	seen := map[int]bool{}
	for key := range k.Params {
		rest, ok := strings.CutPrefix(key, prefix+".")
		if !ok {
			continue
		}
		num, _, _ := strings.Cut(rest, ".")
		if n, err := strconv.Atoi(num); err == nil && n >= 1 {
			seen[n] = true
		}
	}
	ns := make([]int, 0, len(seen))
	for n := range seen {
		ns = append(ns, n)
	}
	sort.Ints(ns)
	return ns
}

// integer parses an optional integer parameter.
func (k *call) integer(name string, def int) (int, error) {
	v := k.Params.Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, ec2.Errorf("InvalidParameterValue", "Value (%s) for parameter %s is invalid. Expected an integer.", v, name)
	}
	return n, nil
}

// boolean parses an optional boolean parameter.
func (k *call) boolean(name string) (bool, error) {
	v := k.Params.Get(name)
	switch strings.ToLower(v) {
	case "":
		return false, nil
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, ec2.Errorf("InvalidParameterValue", "Value (%s) for parameter %s is invalid. Expected a boolean.", v, name)
}

// filter is one Filter.N of a Describe call.
type filter struct {
	Name   string
	Values []string
}

// filters parses Filter.N.Name / Filter.N.Value.M; known says which names
// the resource supports (tag:*, tag-key and tag-value are always known).
func (k *call) filters(known func(name string) bool) ([]filter, error) {
	var fs []filter
	for _, n := range k.indices("Filter") {
		p := "Filter." + strconv.Itoa(n)
		name := k.Params.Get(p + ".Name")
		if name == "" {
			return nil, ec2.Errorf("InvalidParameterValue", "The filter %s has no name", p)
		}
		if !strings.HasPrefix(name, "tag:") && name != "tag-key" && name != "tag-value" && !known(name) {
			return nil, ec2.Errorf("InvalidParameterValue", "The filter '%s' is invalid", name)
		}
		fs = append(fs, filter{Name: name, Values: k.list(p + ".Value")})
	}
	return fs, nil
}

// matches reports whether an item passes every filter: one of a filter's
// values must match one of the item's values for that name (EC2's AND of
// ORs), with * and ? wildcards.
func matches(fs []filter, tags map[string]string, field func(name string) []string) bool {
	for _, f := range fs {
		var have []string
		switch {
		case strings.HasPrefix(f.Name, "tag:"):
			if v, ok := tags[f.Name[4:]]; ok {
				have = []string{v}
			}
		case f.Name == "tag-key":
			for key := range tags {
				have = append(have, key)
			}
		case f.Name == "tag-value":
			for _, v := range tags {
				have = append(have, v)
			}
		default:
			have = field(f.Name)
		}
		if !anyMatch(f.Values, have) {
			return false
		}
	}
	return true
}

func anyMatch(patterns, have []string) bool {
	for _, p := range patterns {
		for _, h := range have {
			if glob(p, h) {
				return true
			}
		}
	}
	return false
}

// glob matches EC2 filter wildcards: * any run, ? one character, \ escapes.
func glob(p, s string) bool {
	for len(p) > 0 {
		switch p[0] {
		case '*':
			for i := len(s); i >= 0; i-- {
				if glob(p[1:], s[i:]) {
					return true
				}
			}
			return false
		case '?':
			if s == "" {
				return false
			}
			p, s = p[1:], s[1:]
		case '\\':
			if len(p) > 1 {
				p = p[1:]
			}
			fallthrough
		default:
			if s == "" || s[0] != p[0] {
				return false
			}
			p, s = p[1:], s[1:]
		}
	}
	return s == ""
}

// pageSpec is a Describe call's MaxResults and NextToken.
type pageSpec struct {
	max   int // 0: no limit
	after string
}

// page parses MaxResults (bounded to [lo, hi] as EC2 does) and NextToken.
func (k *call) page(lo, hi int) (pageSpec, error) {
	var p pageSpec
	if v := k.str("MaxResults"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < lo || n > hi {
			return p, ec2.Errorf("InvalidParameterValue", "Value ( %s ) for parameter maxResults is invalid. Expecting a value between %d and %d.", v, lo, hi)
		}
		p.max = n
	}
	if t := k.str("NextToken"); t != "" {
		b, err := base64.RawURLEncoding.DecodeString(t)
		if err != nil || len(b) == 0 {
			return p, ec2.Errorf("InvalidNextToken", "The token '%s' is invalid.", t)
		}
		p.after = string(b)
	}
	return p, nil
}

// cut returns the page of items (sorted by key) after the token, and the
// next token when more remain.
func cut[T any](p pageSpec, items []T, key func(T) string) ([]T, string) {
	start := 0
	if p.after != "" {
		start = sort.Search(len(items), func(i int) bool { return key(items[i]) > p.after })
	}
	items = items[start:]
	if p.max == 0 || len(items) <= p.max {
		return items, ""
	}
	items = items[:p.max]
	return items, base64.RawURLEncoding.EncodeToString([]byte(key(items[len(items)-1])))
}

// oneOf makes a known-filter predicate from a list of names.
func oneOf(names ...string) func(string) bool {
	set := make(map[string]bool, len(names))
	for _, n := range names {
		set[n] = true
	}
	return func(n string) bool { return set[n] }
}

// wanted turns a list of requested ids into a set (nil: all).
func wanted(ids []string) map[string]bool {
	if len(ids) == 0 {
		return nil
	}
	m := make(map[string]bool, len(ids))
	for _, id := range ids {
		m[id] = true
	}
	return m
}

// sortBy sorts items by a string key, bytewise (the same on both engines,
// whatever their collation), which is the order pages are cut in.
func sortBy[T any](items []T, key func(T) string) {
	sort.Slice(items, func(i, j int) bool { return key(items[i]) < key(items[j]) })
}

// notFoundOr maps a missing row to the given API error and wraps others.
func notFoundOr(err error, notFound *ec2.Error) error {
	if errors.Is(err, sql.ErrNoRows) {
		return notFound
	}
	return err
}
