package controller

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"ironbark/controller/ec2"
	"ironbark/internal/store"
)

// Tag is one key/value of a resource's tagSet.
type Tag struct {
	Key   string `xml:"key"`
	Value string `xml:"value"`
}

// tagSet turns a resource's tags into its tagSet, ordered by key.
func tagSet(m map[string]string) []Tag {
	if len(m) == 0 {
		return nil
	}
	ts := make([]Tag, 0, len(m))
	for k, v := range m {
		ts = append(ts, Tag{k, v})
	}
	sortBy(ts, func(t Tag) string { return t.Key })
	return ts
}

// loadTags returns resource id -> key -> value for the tags of one kind of
// resource that the caller may see (all of them for the admin), only of
// the given resources when ids is not empty.
func loadTags(ctx context.Context, q store.Querier, k *call, resourceType string, ids ...string) (map[string]map[string]string, error) {
	query := `SELECT resource_id, key, value FROM tags WHERE resource_type = ?`
	args := []any{resourceType}
	if !k.admin() {
		query += ` AND account_id = ?`
		args = append(args, k.account())
	}
	if len(ids) > 0 {
		query += ` AND resource_id IN (?` + strings.Repeat(`, ?`, len(ids)-1) + `)`
		args = append(args, anySlice(ids)...)
	}
	rows, err := q.Query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("load tags: %w", err)
	}
	defer rows.Close()
	out := map[string]map[string]string{}
	for rows.Next() {
		var id, key, val string
		if err := rows.Scan(&id, &key, &val); err != nil {
			return nil, err
		}
		if out[id] == nil {
			out[id] = map[string]string{}
		}
		out[id][key] = val
	}
	return out, rows.Err()
}

// resourceType names what a resource id refers to, by its prefix.
func resourceType(id string) string {
	prefix, _, _ := strings.Cut(id, "-")
	switch prefix {
	case "i":
		return "instance"
	case "emi", "eki", "eri", "ami", "aki", "ari":
		return "image"
	case "sg":
		return "security-group"
	case "key":
		return "key-pair"
	case "eipalloc":
		return "elastic-ip"
	case "r":
		return "reservation"
	}
	return ""
}

// resourceOwner finds the account that owns a taggable resource.
func resourceOwner(ctx context.Context, q store.Querier, id string) (string, error) {
	var table, col string
	switch resourceType(id) {
	case "instance":
		table, col = "instances", "id"
	case "image":
		table, col = "images", "id"
	case "security-group":
		table, col = "security_groups", "id"
	case "key-pair":
		table, col = "key_pairs", "id"
	case "elastic-ip":
		table, col = "addresses", "allocation_id"
	default:
		return "", ec2.Errorf("InvalidID", "The ID '%s' is not valid", id)
	}
	var owner string
	err := q.QueryRow(ctx, `SELECT account_id FROM `+table+` WHERE `+col+` = ?`, id).Scan(&owner)
	if err != nil {
		return "", notFoundOr(err, ec2.Errorf("InvalidID", "The ID '%s' is not valid", id))
	}
	return owner, nil
}

// tagParam is one Tag.N of CreateTags or DeleteTags.
type tagParam struct {
	Key, Value string
	HasValue   bool
}

// Tag limits, as EC2 has them.
const (
	maxTagsPerResource = 50
	maxTagKeyLen       = 128
	maxTagValueLen     = 256
)

// checkTag checks one tag as CreateTags and RunInstances' TagSpecification
// both do.
func checkTag(key, value string) error {
	if key == "" {
		return ec2.InvalidParameterValue("Tag key must not be empty")
	}
	if len(key) > maxTagKeyLen || len(value) > maxTagValueLen || strings.HasPrefix(strings.ToLower(key), "aws:") {
		return ec2.InvalidParameterValue("Tag %q is not a valid tag: keys are at most %d characters and do not start with aws:, values at most %d",
			key, maxTagKeyLen, maxTagValueLen)
	}
	return nil
}

// tagLimit is the error for more than maxTagsPerResource tags.
func tagLimit() error {
	return ec2.Errorf("TagLimitExceeded", "The maximum number of Tags for a resource has been reached.")
}

// tagSpecs reads TagSpecification.N (ResourceType, Tag.N.Key/Value) of a
// create call, checked like CreateTags (checkTag, no key twice, at most
// maxTagsPerResource), and returns the tags by resource type. A resource
// type not in types is InvalidParameterValue, as is one named twice.
func (k *call) tagSpecs(types ...string) (map[string][]Tag, error) {
	specs, err := k.Query().List("TagSpecification")
	if err != nil {
		return nil, err
	}
	out := map[string][]Tag{}
	for _, s := range specs {
		rt := s.String("ResourceType")
		if !slices.Contains(types, rt) {
			return nil, ec2.InvalidValue(s.Name("ResourceType"), rt, "Expected one of: "+strings.Join(types, ", ")+".")
		}
		if _, dup := out[rt]; dup {
			return nil, ec2.InvalidParameterValue("The tag specification resource type %s is specified more than once", rt)
		}
		tags, err := s.List("Tag")
		if err != nil {
			return nil, err
		}
		spec := []Tag{}
		for _, t := range tags {
			key, value := t.String("Key"), t.String("Value")
			if err := checkTag(key, value); err != nil {
				return nil, err
			}
			if slices.ContainsFunc(spec, func(o Tag) bool { return o.Key == key }) {
				return nil, ec2.InvalidParameterValue("Duplicate tag key '%s' in TagSpecification", key)
			}
			spec = append(spec, Tag{Key: key, Value: value})
		}
		if len(spec) > maxTagsPerResource {
			return nil, tagLimit()
		}
		out[rt] = spec
	}
	return out, nil
}

// insertTags stores a new resource's tags, in the transaction that makes it.
func insertTags(ctx context.Context, tx store.Querier, id, resourceType, owner string, tags []Tag) error {
	for _, t := range tags {
		if _, err := tx.Exec(ctx, `INSERT INTO tags (resource_id, key, value, account_id, resource_type) VALUES (?, ?, ?, ?, ?)`,
			id, t.Key, t.Value, owner, resourceType); err != nil {
			return fmt.Errorf("tag %s: %w", id, err)
		}
	}
	return nil
}

// tagParams reads Tag.N.Key / Tag.N.Value, N any non-negative number
// (clients send 0-based lists too), in the order of N.
func (k *call) tagParams() ([]tagParam, error) {
	items, err := k.Query().List("Tag")
	if err != nil {
		return nil, err
	}
	ts := make([]tagParam, 0, len(items))
	for _, it := range items {
		if err := it.Check("Key", "Value"); err != nil {
			return nil, err
		}
		key := it.String("Key")
		value, hasValue := it.Lookup("Value")
		if err := checkTag(key, value); err != nil {
			return nil, err
		}
		ts = append(ts, tagParam{Key: key, Value: value, HasValue: hasValue})
	}
	return ts, nil
}

// tagRequest reads the ResourceId.N and Tag.N of CreateTags/DeleteTags.
func (k *call) tagRequest() ([]string, []tagParam, error) {
	ids, err := k.list("ResourceId")
	if err != nil {
		return nil, nil, err
	}
	if len(ids) == 0 {
		return nil, nil, ec2.Errorf("MissingParameter", "The request must contain the parameter resourceIdSet")
	}
	tags, err := k.tagParams()
	return ids, tags, err
}

// ownedResource returns the owner of a resource the caller may tag.
func ownedResource(ctx context.Context, tx *store.Tx, k *call, id string) (string, error) {
	owner, err := resourceOwner(ctx, tx, id)
	if err == nil && !k.owns(owner) {
		err = ec2.Errorf("InvalidID", "The ID '%s' is not valid", id)
	}
	return owner, err
}

// createTagsParams are the parameters CreateTags accepts.
var createTagsParams = []string{
	"ResourceId.N", "Tag.N.Key", "Tag.N.Value",
}

func (c *Cloud) createTags(ctx context.Context, k *call) (any, error) {
	ids, tags, err := k.tagRequest()
	if err != nil {
		return nil, err
	}
	if len(tags) == 0 {
		return nil, ec2.Errorf("MissingParameter", "The request must contain the parameter tagSet")
	}
	err = c.db.InTx(ctx, func(tx *store.Tx) error {
		for _, id := range ids {
			owner, err := ownedResource(ctx, tx, k, id)
			if err != nil {
				return err
			}
			for _, t := range tags {
				if _, err := tx.Exec(ctx, `DELETE FROM tags WHERE resource_id = ? AND key = ?`, id, t.Key); err != nil {
					return err
				}
				if _, err := tx.Exec(ctx, `INSERT INTO tags (resource_id, key, value, account_id, resource_type) VALUES (?, ?, ?, ?, ?)`,
					id, t.Key, t.Value, owner, resourceType(id)); err != nil {
					return err
				}
			}
			var n int
			if err := tx.QueryRow(ctx, `SELECT COUNT(*) FROM tags WHERE resource_id = ?`, id).Scan(&n); err != nil {
				return err
			}
			if n > maxTagsPerResource {
				return tagLimit()
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return ok()
}

// deleteTagsParams are the parameters DeleteTags accepts.
var deleteTagsParams = []string{
	"ResourceId.N", "Tag.N.Key", "Tag.N.Value",
}

func (c *Cloud) deleteTags(ctx context.Context, k *call) (any, error) {
	ids, tags, err := k.tagRequest()
	if err != nil {
		return nil, err
	}
	err = c.db.InTx(ctx, func(tx *store.Tx) error {
		for _, id := range ids {
			if _, err := ownedResource(ctx, tx, k, id); err != nil {
				return err
			}
			if len(tags) == 0 {
				if _, err := tx.Exec(ctx, `DELETE FROM tags WHERE resource_id = ?`, id); err != nil {
					return err
				}
			}
			for _, t := range tags {
				q, args := `DELETE FROM tags WHERE resource_id = ? AND key = ?`, []any{id, t.Key}
				if t.HasValue {
					q += ` AND value = ?`
					args = append(args, t.Value)
				}
				if _, err := tx.Exec(ctx, q, args...); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return ok()
}

// TagDescription is one item of DescribeTags.
type TagDescription struct {
	ResourceID   string `xml:"resourceId"`
	ResourceType string `xml:"resourceType"`
	Key          string `xml:"key"`
	Value        string `xml:"value"`
}

// DescribeTagsResponse is DescribeTags' answer.
type DescribeTagsResponse struct {
	ec2.ResponseMeta
	Tags      []TagDescription `xml:"tagSet>item"`
	NextToken string           `xml:"nextToken,omitempty"`
}

// describeTagsParams are the parameters DescribeTags accepts.
var describeTagsParams = []string{
	"Filter.N.Name", "Filter.N.Value.N", "MaxResults", "NextToken",
}

func (c *Cloud) describeTags(ctx context.Context, k *call) (any, error) {
	d := &describer[TagDescription]{
		filters: []string{"key", "value", "resource-id", "resource-type"},
		field: func(t TagDescription, name string) []string {
			switch name {
			case "key":
				return []string{t.Key}
			case "value":
				return []string{t.Value}
			case "resource-id":
				return []string{t.ResourceID}
			case "resource-type":
				return []string{t.ResourceType}
			}
			return nil
		},
		key:   func(t TagDescription) string { return t.ResourceID + "\x00" + t.Key },
		paged: true, lo: 5, hi: 1000,
		load: c.loadTagDescriptions,
	}
	page, next, err := d.run(ctx, k)
	if err != nil {
		return nil, err
	}
	return &DescribeTagsResponse{Tags: page, NextToken: next}, nil
}

// loadTagDescriptions loads the tags of the caller's resources (all for
// the admin).
func (c *Cloud) loadTagDescriptions(ctx context.Context, k *call, _ map[string][]string) ([]TagDescription, error) {
	query := `SELECT resource_id, resource_type, key, value FROM tags`
	var args []any
	if !k.admin() {
		query += ` WHERE account_id = ?`
		args = append(args, k.account())
	}
	rows, err := c.db.Query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("describe tags: %w", err)
	}
	defer rows.Close()
	var out []TagDescription
	for rows.Next() {
		var t TagDescription
		if err := rows.Scan(&t.ResourceID, &t.ResourceType, &t.Key, &t.Value); err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, rows.Err()
}
