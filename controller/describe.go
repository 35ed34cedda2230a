package controller

import (
	"context"
	"strings"

	"ironbark/controller/ec2"
)

// The one Describe pipeline. Every Describe action runs the same steps in
// the same order, so they cannot disagree:
//
//  1. read the requested ids (InstanceId.N, KeyName.N, ...) and filters;
//     compile the filters once (their names checked against the
//     resource's, their sizes capped by ec2.Params.Filters);
//  2. load the rows the caller may see (narrowed by the ids when the
//     resource can);
//  3. check every requested id against those rows, before any filter:
//     an id that does not exist or is not visible is the resource's
//     InvalidXxx.NotFound, whatever the filters say;
//  4. keep the rows that are asked for and pass the filters;
//  5. sort by the resource's key (bytewise, the same on both engines) and
//     cut the page that MaxResults/NextToken ask for.
//
// A resource supplies only its rows and its filter fields: a describer.

// idParam is one list of ids a Describe call may name (InstanceId.N).
type idParam[T any] struct {
	name     string             // the parameter, "InstanceId"
	of       func(T) string     // the row's value for it
	check    func(string) error // a malformed id's error, or nil
	notFound func(string) error
}

// describer is what one Describe action supplies to the pipeline.
type describer[T any] struct {
	ids     []idParam[T]
	filters []string // the resource's filter names (tag:*, tag-key and tag-value are added)
	field   func(T, string) []string
	tags    func(T) []Tag // nil: the resource has no tags
	key     func(T) string
	// paged: the action takes MaxResults (within lo..hi) and NextToken.
	paged  bool
	lo, hi int
	// load returns the rows the caller may see; ids are the requested
	// ids by parameter name, for resources that can load only those.
	load func(ctx context.Context, k *call, ids map[string][]string) ([]T, error)
	// keep, when set, is one more selection of the action's own
	// (DescribeImages' Owner.N, DescribeInstanceStatus'
	// IncludeAllInstances), applied after the id check like a filter.
	keep func(T) bool
	// loadPage, when set, cuts a plain page (no ids, no filters, no keep)
	// in the store, so that listing N rows page by page costs O(N).
	loadPage func(ctx context.Context, k *call, p ec2.Page) ([]T, string, error)
}

// describeRequest is a Describe call's selection, read and compiled.
type describeRequest struct {
	ids     map[string][]string
	asked   bool // any id asked for
	filters ec2.Matcher
	page    ec2.Page
}

// parse reads a call's ids, filters and page.
func (d *describer[T]) parse(k *call) (describeRequest, error) {
	var r describeRequest
	q := k.Query()
	r.ids = make(map[string][]string, len(d.ids))
	for _, p := range d.ids {
		ids, err := q.Strings(p.name)
		if err != nil {
			return r, err
		}
		for _, id := range ids {
			if p.check != nil {
				if err := p.check(id); err != nil {
					return r, err
				}
			}
		}
		if len(ids) > 0 {
			r.ids[p.name] = ids
			r.asked = true
		}
	}
	fs, err := q.Filters()
	if err != nil {
		return r, err
	}
	if r.filters, err = fs.Compile(append(d.filters, "tag:*", "tag-key", "tag-value")...); err != nil {
		return r, err
	}
	if d.paged {
		if r.page, err = k.page(d.lo, d.hi); err != nil {
			return r, err
		}
	}
	return r, nil
}

// run answers a Describe call: the page of rows and the NextToken.
func (d *describer[T]) run(ctx context.Context, k *call) ([]T, string, error) {
	r, err := d.parse(k)
	if err != nil {
		return nil, "", err
	}
	if d.loadPage != nil && r.page.Max > 0 && !r.asked && r.filters.Empty() && d.keep == nil {
		return d.loadPage(ctx, k, r.page)
	}
	rows, err := d.load(ctx, k, r.ids)
	if err != nil {
		return nil, "", err
	}
	want := make([]map[string]bool, len(d.ids))
	for i, p := range d.ids {
		ids := r.ids[p.name]
		if len(ids) == 0 {
			continue
		}
		have := make(map[string]bool, len(rows))
		for _, row := range rows {
			have[p.of(row)] = true
		}
		for _, id := range ids {
			if !have[id] {
				return nil, "", p.notFound(id)
			}
		}
		want[i] = wanted(ids)
	}
	out := make([]T, 0, len(rows))
	for _, row := range rows {
		if !d.selected(row, want, r.filters) {
			continue
		}
		out = append(out, row)
	}
	sortBy(out, d.key)
	if !d.paged {
		return out, "", nil
	}
	page, next := ec2.Paginate(out, d.key, r.page)
	return page, next, nil
}

func (d *describer[T]) selected(row T, want []map[string]bool, fs ec2.Matcher) bool {
	for i, p := range d.ids {
		if want[i] != nil && !want[i][p.of(row)] {
			return false
		}
	}
	if d.keep != nil && !d.keep(row) {
		return false
	}
	if fs.Empty() {
		return true
	}
	var tags []Tag
	if d.tags != nil {
		tags = d.tags(row)
	}
	return fs.Match(func(name string) []string {
		switch {
		case strings.HasPrefix(name, "tag:"):
			for _, t := range tags {
				if t.Key == name[4:] {
					return []string{t.Value}
				}
			}
			return nil
		case name == "tag-key":
			keys := make([]string, len(tags))
			for i, t := range tags {
				keys[i] = t.Key
			}
			return keys
		case name == "tag-value":
			vals := make([]string, len(tags))
			for i, t := range tags {
				vals[i] = t.Value
			}
			return vals
		}
		return d.field(row, name)
	})
}
