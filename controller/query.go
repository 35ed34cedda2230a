package controller

import (
	"database/sql"
	"errors"
	"sort"

	"ironbark/controller/ec2"
)

// The parameter, filter and page helpers of controller/ec2, bound to one
// call so actions read short.

// str returns a parameter's value ("" when absent).
func (k *call) str(name string) string { return k.Params.Get(name) }

// required returns a parameter or MissingParameter.
func (k *call) required(name string) (string, error) { return k.Query().Required(name) }

// list returns the flattened list prefix.1, prefix.2, ... in index order;
// a malformed index is an UnknownParameter error.
func (k *call) list(prefix string) ([]string, error) { return k.Query().Strings(prefix) }

// integer parses an optional integer parameter.
func (k *call) integer(name string, def int) (int, error) {
	n, err := k.Query().Int(name, int64(def))
	return int(n), err
}

// boolean parses an optional boolean parameter.
func (k *call) boolean(name string) (bool, error) { return k.Query().Bool(name, false) }

// page parses MaxResults (bounded to [lo, hi]) and NextToken.
func (k *call) page(lo, hi int) (ec2.Page, error) { return k.Page(lo, hi) }

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

// notFoundOr maps a missing row to the given API error and passes others.
func notFoundOr(err error, notFound *ec2.Error) error {
	if errors.Is(err, sql.ErrNoRows) {
		return notFound
	}
	return err
}
