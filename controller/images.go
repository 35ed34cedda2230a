package controller

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"ironbark/controller/ec2"
	"ironbark/controller/usage"
	"ironbark/internal/store"
)

// Image kinds and the id prefix each gets (Eucalyptus' EMI, EKI, ERI).
const (
	KindMachine = "machine"
	KindKernel  = "kernel"
	KindRamdisk = "ramdisk"
)

var kindPrefix = map[string]string{KindMachine: "emi", KindKernel: "eki", KindRamdisk: "eri"}

// ImageRecord is an image to register: a blob already in the image store
// (Digest) or, over the API, a bundle location kept as-is.
type ImageRecord struct {
	// Owner is the owning account's 12-digit id or its name; empty means
	// the admin account.
	Owner          string
	Name           string
	Description    string
	Kind           string // machine | kernel | ramdisk
	Architecture   string // x86_64 (default) | i386 | arm64
	Digest         string // sha256:<hex>
	Size           int64
	Format         string // raw (default) | qcow2
	RootDeviceType string // instance-store (default) | ebs
	KernelID       string
	RamdiskID      string
	Public         bool
	Location       string // ImageLocation as DescribeImages shows it; Digest when empty
	User           string // the account's user who registered it ("" for the account itself or the CLI)
}

var imageName = regexp.MustCompile(fmt.Sprintf("^[%s]{%d,%d}$", imageNameChars, minImageName, maxImageName))

// RegisterStoredImage records an image whose blob is in the image store and
// returns its id (emi-/eki-/eri-). It runs the controller's migrations
// first, so `ironbark image import` works before the controller's first
// start; the admin account is made then if Owner names it.
func RegisterStoredImage(ctx context.Context, db *store.DB, r ImageRecord) (string, error) {
	if err := db.Migrate(ctx, Migrations()); err != nil {
		return "", err
	}
	owner, err := resolveOwner(ctx, db, r.Owner)
	if err != nil {
		return "", fmt.Errorf("register image %q: %w", r.Name, err)
	}
	r.Owner = owner
	id, err := insertImage(ctx, db, r)
	if err != nil {
		return "", fmt.Errorf("register image %q: %w", r.Name, err)
	}
	return id, nil
}

func resolveOwner(ctx context.Context, db *store.DB, owner string) (string, error) {
	switch {
	case owner == "" || owner == AdminAccount:
		a, err := EnsureAdmin(ctx, db)
		return a.ID, err
	case len(owner) == 12 && strings.Trim(owner, digits) == "":
		var n int
		if err := db.QueryRow(ctx, `SELECT COUNT(*) FROM accounts WHERE id = ?`, owner).Scan(&n); err != nil {
			return "", err
		}
		if n == 0 {
			return "", fmt.Errorf("account %s: %w", owner, store.ErrNotFound)
		}
		return owner, nil
	}
	a, err := LookupAccount(ctx, db, owner)
	return a.ID, err
}

// validateImage checks a record and fills defaults; errors are API errors.
func validateImage(ctx context.Context, q store.Querier, r *ImageRecord) error {
	if r.Kind == "" {
		r.Kind = KindMachine
	}
	if _, ok := kindPrefix[r.Kind]; !ok {
		return ec2.Errorf("InvalidParameterValue", "Invalid image type %q: machine, kernel or ramdisk", r.Kind)
	}
	if !imageName.MatchString(r.Name) {
		return ec2.Errorf("InvalidAMIName.Malformed", "AMI names must be between 3 and 128 characters long, and may contain letters, numbers, '(', ')', '.', '-', '/' and '_'")
	}
	if r.Architecture == "" {
		r.Architecture = "x86_64"
	}
	switch r.Architecture {
	case "x86_64", "i386", "arm64":
	default:
		return ec2.Errorf("InvalidParameterValue", "Value (%s) for parameter architecture is invalid.", r.Architecture)
	}
	if r.Format == "" {
		r.Format = "raw"
	}
	if r.Format != "raw" && r.Format != "qcow2" {
		return ec2.Errorf("InvalidParameterValue", "Invalid image format %q: raw or qcow2", r.Format)
	}
	if r.RootDeviceType == "" {
		r.RootDeviceType = "instance-store"
	}
	if r.RootDeviceType != "instance-store" && r.RootDeviceType != "ebs" {
		return ec2.Errorf("InvalidParameterValue", "Invalid root device type %q", r.RootDeviceType)
	}
	if r.Digest != "" && !canonicalDigest(r.Digest) {
		return ec2.Errorf("InvalidParameterValue", "Invalid digest %q: sha256:<64 hex>", r.Digest)
	}
	if r.Digest == "" && r.Location == "" {
		return ec2.Errorf("MissingParameter", "The request must contain the parameter ImageLocation")
	}
	if r.Location == "" {
		r.Location = r.Digest
	}
	if r.Kind != KindMachine && (r.KernelID != "" || r.RamdiskID != "") {
		return ec2.Errorf("InvalidParameterCombination", "Only machine images have a kernel or ramdisk")
	}
	for _, ref := range []struct{ id, kind string }{{r.KernelID, KindKernel}, {r.RamdiskID, KindRamdisk}} {
		if ref.id == "" {
			continue
		}
		var kind string
		err := q.QueryRow(ctx, `SELECT kind FROM images WHERE id = ?`, ref.id).Scan(&kind)
		if err != nil || kind != ref.kind {
			if err != nil && !errors.Is(err, sql.ErrNoRows) {
				return err
			}
			return ec2.Errorf("InvalidAMIID.NotFound", "The image id '[%s]' does not exist", ref.id)
		}
	}
	return nil
}

func insertImage(ctx context.Context, db *store.DB, r ImageRecord) (string, error) {
	var id string
	err := db.InTx(ctx, func(tx *store.Tx) error {
		if err := validateImage(ctx, tx, &r); err != nil {
			return err
		}
		if err := checkQuota(ctx, tx, r.Owner, QuotaImages, 1); err != nil {
			return err
		}
		id = newID(kindPrefix[r.Kind], 8)
		now := time.Now()
		_, err := tx.Exec(ctx, `INSERT INTO images (id, account_id, name, description, kind, architecture,
			location, digest, size, format, root_device_type, kernel_id, ramdisk_id, public, created_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			id, r.Owner, r.Name, r.Description, r.Kind, r.Architecture, r.Location, r.Digest, r.Size,
			r.Format, r.RootDeviceType, r.KernelID, r.RamdiskID, boolInt(r.Public), now.Unix())
		if store.IsUniqueViolation(err) {
			return ec2.Errorf("InvalidAMIName.Duplicate", "AMI name %s is already in use by AMI owned by this account", r.Name)
		}
		if err != nil {
			return err
		}
		return usage.Record(ctx, tx, usage.Event{At: now, Kind: usage.KindImage, Resource: id, State: usage.StateStored,
			Account: r.Owner, User: r.User, Bytes: r.Size})
	})
	return id, err
}

// imageRow is an image as stored.
type imageRow struct {
	ImageRecord
	ID        string
	Virt      string
	RootName  string
	State     string
	CreatedAt int64
}

const imageColumns = `id, account_id, name, description, kind, architecture, location, digest, size, format,
	root_device_type, root_device_name, kernel_id, ramdisk_id, virtualization, public, state, created_at`

func scanImage(sc interface{ Scan(...any) error }) (imageRow, error) {
	var r imageRow
	var public int
	err := sc.Scan(&r.ID, &r.Owner, &r.Name, &r.Description, &r.Kind, &r.Architecture, &r.Location, &r.Digest,
		&r.Size, &r.Format, &r.RootDeviceType, &r.RootName, &r.KernelID, &r.RamdiskID, &r.Virt, &public,
		&r.State, &r.CreatedAt)
	r.Public = public == 1
	return r, err
}

// launchableImage loads an image the caller may launch (own, public,
// shared with them, or any for the admin).
func launchableImage(ctx context.Context, q store.Querier, k *call, id string) (imageRow, error) {
	r, err := scanImage(q.QueryRow(ctx, `SELECT `+imageColumns+` FROM images WHERE id = ?`, id))
	notFound := ec2.Errorf("InvalidAMIID.NotFound", "The image id '[%s]' does not exist", id)
	if err != nil {
		return r, notFoundOr(err, notFound)
	}
	if k.owns(r.Owner) || r.Public {
		return r, nil
	}
	var n int
	if err := q.QueryRow(ctx, `SELECT COUNT(*) FROM launch_permissions WHERE image_id = ? AND account_id = ?`,
		id, k.account()).Scan(&n); err != nil {
		return r, err
	}
	if n == 0 {
		return r, notFound
	}
	return r, nil
}

// RegisterImageResponse is RegisterImage's answer.
type RegisterImageResponse struct {
	ec2.ResponseMeta
	ImageID string `xml:"imageId"`
}

// registerImageParams are the parameters RegisterImage accepts.
var registerImageParams = []string{
	"Name", "Description", "ImageType", "Architecture", "KernelId", "RamdiskId", "ImageLocation",
	"RootDeviceName", "VirtualizationType",
}

func (c *Cloud) registerImage(ctx context.Context, k *call) (any, error) {
	r := ImageRecord{
		Owner:          k.account(),
		User:           k.Principal.User,
		Name:           k.str("Name"),
		Description:    k.str("Description"),
		Kind:           k.str("ImageType"), // ironbark's own: machine | kernel | ramdisk
		Architecture:   k.str("Architecture"),
		KernelID:       k.str("KernelId"),
		RamdiskID:      k.str("RamdiskId"),
		Location:       k.str("ImageLocation"),
		RootDeviceType: "instance-store",
	}
	if r.Location == "" {
		return nil, ec2.Errorf("MissingParameter", "The request must contain the parameter ImageLocation")
	}
	if strings.HasPrefix(r.Location, "sha256:") {
		r.Digest = r.Location
		notInStore := ec2.Errorf("InvalidParameterValue", "Image blob %s is not in the image store", r.Digest)
		readable, err := c.mayReadBlob(ctx, k, r.Digest)
		if err != nil {
			return nil, err
		}
		if !readable {
			// Said as for a missing blob: a tenant learns nothing of
			// blobs it may not read.
			return nil, notInStore
		}
		if c.cfg.BlobSize != nil {
			size, err := c.cfg.BlobSize(ctx, r.Digest)
			if err != nil {
				return nil, notInStore
			}
			r.Size = size
		}
	}
	if r.Name == "" {
		r.Name = strings.TrimSuffix(pathBase(r.Location), ".manifest.xml")
	}
	id, err := insertImage(ctx, c.db, r)
	if err != nil {
		return nil, err
	}
	return &RegisterImageResponse{ImageID: id}, nil
}

// mayReadBlob reports whether the caller may register an image by the
// blob's digest: the admin may (its imports put blobs in the store), and
// an account may when an image it could launch has that digest (its own,
// public, or shared with it). Otherwise registering by digest would turn a
// revoked or never-given launch permission into an image of one's own.
func (c *Cloud) mayReadBlob(ctx context.Context, k *call, digest string) (bool, error) {
	if k.admin() {
		return true, nil
	}
	var n int
	err := c.db.QueryRow(ctx, `SELECT COUNT(*) FROM images WHERE digest = ? AND (account_id = ? OR public = 1
		OR id IN (SELECT image_id FROM launch_permissions WHERE account_id = ?))`, digest, k.account(), k.account()).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("image blob access: %w", err)
	}
	return n > 0, nil
}

func pathBase(s string) string {
	if i := strings.LastIndex(s, "/"); i >= 0 {
		return s[i+1:]
	}
	return s
}

// deregisterImageParams are the parameters DeregisterImage accepts.
var deregisterImageParams = []string{
	"ImageId",
}

func (c *Cloud) deregisterImage(ctx context.Context, k *call) (any, error) {
	id, err := k.required("ImageId")
	if err != nil {
		return nil, err
	}
	err = c.db.InTx(ctx, func(tx *store.Tx) error {
		var owner string
		err := tx.QueryRow(ctx, `SELECT account_id FROM images WHERE id = ?`, id).Scan(&owner)
		if err == nil && !k.owns(owner) {
			err = sql.ErrNoRows
		}
		if err != nil {
			return notFoundOr(err, ec2.Errorf("InvalidAMIID.NotFound", "The image id '[%s]' does not exist", id))
		}
		if _, err := tx.Exec(ctx, `DELETE FROM launch_permissions WHERE image_id = ?`, id); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM tags WHERE resource_id = ?`, id); err != nil {
			return err
		}
		if _, err = tx.Exec(ctx, `DELETE FROM images WHERE id = ?`, id); err != nil {
			return err
		}
		return usage.Record(ctx, tx, usage.Event{At: k.now, Kind: usage.KindImage, Resource: id, State: usage.StateRemoved,
			Account: owner, User: k.Principal.User})
	})
	if err != nil {
		return nil, err
	}
	return ok()
}

// BlockDevice is one item of an image's or instance's blockDeviceMapping.
type BlockDevice struct {
	DeviceName  string `xml:"deviceName"`
	VirtualName string `xml:"virtualName,omitempty"`
}

// Image is one item of DescribeImages.
type Image struct {
	ImageID            string        `xml:"imageId"`
	ImageLocation      string        `xml:"imageLocation"`
	ImageState         string        `xml:"imageState"`
	ImageOwnerID       string        `xml:"imageOwnerId"`
	CreationDate       string        `xml:"creationDate"`
	IsPublic           bool          `xml:"isPublic"`
	Architecture       string        `xml:"architecture"`
	ImageType          string        `xml:"imageType"`
	KernelID           string        `xml:"kernelId,omitempty"`
	RamdiskID          string        `xml:"ramdiskId,omitempty"`
	Name               string        `xml:"name"`
	Description        string        `xml:"description,omitempty"`
	RootDeviceType     string        `xml:"rootDeviceType"`
	RootDeviceName     string        `xml:"rootDeviceName"`
	BlockDeviceMapping []BlockDevice `xml:"blockDeviceMapping>item"`
	VirtualizationType string        `xml:"virtualizationType"`
	Hypervisor         string        `xml:"hypervisor"`
	Tags               []Tag         `xml:"tagSet>item"`
}

// DescribeImagesResponse is DescribeImages' answer.
type DescribeImagesResponse struct {
	ec2.ResponseMeta
	Images    []Image `xml:"imagesSet>item"`
	NextToken string  `xml:"nextToken,omitempty"`
}

var imageFilters = []string{"architecture", "image-id", "image-type", "is-public", "kernel-id", "name",
	"owner-id", "ramdisk-id", "root-device-type", "root-device-name", "state", "description",
	"virtualization-type", "hypervisor", "manifest-location", "creation-date"}

// describeImagesParams are the parameters DescribeImages accepts.
var describeImagesParams = []string{
	"ImageId.N", "Owner.N", "ExecutableBy.N", "Filter.N.Name", "Filter.N.Value.N", "MaxResults", "NextToken",
}

func (c *Cloud) describeImages(ctx context.Context, k *call) (any, error) {
	owners, err := k.list("Owner")
	if err != nil {
		return nil, err
	}
	execBy, err := k.list("ExecutableBy")
	if err != nil {
		return nil, err
	}
	var shared map[string]bool
	d := &describer[Image]{
		ids: []idParam[Image]{{name: "ImageId", of: func(i Image) string { return i.ImageID },
			notFound: func(id string) error {
				return ec2.Errorf("InvalidAMIID.NotFound", "The image id '[%s]' does not exist", id)
			}}},
		filters: imageFilters,
		field:   func(i Image, name string) []string { return i.field(name) },
		tags:    func(i Image) []Tag { return i.Tags },
		key:     func(i Image) string { return i.ImageID },
		paged:   true, lo: 5, hi: 1000,
		load: func(ctx context.Context, k *call, _ map[string][]string) ([]Image, error) {
			var imgs []Image
			imgs, shared, err = c.loadImages(ctx, k)
			return imgs, err
		},
		keep: func(i Image) bool {
			r := imageRow{ID: i.ImageID, ImageRecord: ImageRecord{Owner: i.ImageOwnerID, Public: i.IsPublic}}
			return (len(owners) == 0 || imageOwnerMatch(k, r, owners)) &&
				(len(execBy) == 0 || imageExecMatch(k, r, shared[i.ImageID], execBy))
		},
	}
	page, next, err := d.run(ctx, k)
	if err != nil {
		return nil, err
	}
	return &DescribeImagesResponse{Images: page, NextToken: next}, nil
}

// loadImages loads the images the caller may see: own, public and shared
// ones (the admin sees all), and the set of those shared with the caller.
// Other accounts' private images cost nothing.
func (c *Cloud) loadImages(ctx context.Context, k *call) ([]Image, map[string]bool, error) {
	shared := map[string]bool{}
	rows, err := c.db.Query(ctx, `SELECT image_id FROM launch_permissions WHERE account_id = ?`, k.account())
	if err != nil {
		return nil, nil, fmt.Errorf("describe images: %w", err)
	}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, nil, err
		}
		shared[id] = true
	}
	rows.Close()
	tags, err := loadTags(ctx, c.db, k, "image")
	if err != nil {
		return nil, nil, err
	}
	q, args := `SELECT `+imageColumns+` FROM images`, []any(nil)
	if !k.admin() {
		q += ` WHERE account_id = ? OR public = 1 OR id IN (SELECT image_id FROM launch_permissions WHERE account_id = ?)`
		args = []any{k.account(), k.account()}
	}
	rows, err = c.db.Query(ctx, q, args...)
	if err != nil {
		return nil, nil, fmt.Errorf("describe images: %w", err)
	}
	defer rows.Close()
	var out []Image
	for rows.Next() {
		r, err := scanImage(rows)
		if err != nil {
			return nil, nil, err
		}
		if !k.owns(r.Owner) && !r.Public && !shared[r.ID] {
			continue
		}
		out = append(out, imageItem(r, tags[r.ID]))
	}
	return out, shared, rows.Err()
}

func imageOwnerMatch(k *call, r imageRow, owners []string) bool {
	for _, o := range owners {
		if o == r.Owner || (o == "self" && r.Owner == k.account()) {
			return true
		}
	}
	return false
}

func imageExecMatch(k *call, r imageRow, shared bool, by []string) bool {
	for _, e := range by {
		switch {
		case e == "all" && r.Public:
			return true
		case (e == "self" || e == k.account()) && (r.Owner == k.account() || shared || r.Public):
			return true
		}
	}
	return false
}

func imageItem(r imageRow, tags map[string]string) Image {
	img := Image{
		ImageID: r.ID, ImageLocation: r.Location, ImageState: r.State, ImageOwnerID: r.Owner,
		CreationDate: ec2.Time{Time: time.Unix(r.CreatedAt, 0)}.String(), IsPublic: r.Public, Architecture: r.Architecture,
		ImageType: r.Kind, KernelID: r.KernelID, RamdiskID: r.RamdiskID, Name: r.Name,
		Description: r.Description, RootDeviceType: r.RootDeviceType, RootDeviceName: r.RootName,
		VirtualizationType: r.Virt, Hypervisor: "xen", Tags: tagSet(tags),
	}
	if r.Kind == KindMachine {
		// An instance-store image maps its ephemeral disk by virtual
		// name, as Eucalyptus and EC2 list it; the root device is
		// rootDeviceName, not an item (an item with neither virtualName
		// nor ebs reads as an EBS volume to the SDKs).
		img.BlockDeviceMapping = []BlockDevice{{DeviceName: "/dev/sdb", VirtualName: "ephemeral0"}}
	}
	return img
}

func (i Image) field(name string) []string {
	switch name {
	case "architecture":
		return []string{i.Architecture}
	case "image-id":
		return []string{i.ImageID}
	case "image-type":
		return []string{i.ImageType}
	case "is-public":
		return []string{fmt.Sprint(i.IsPublic)}
	case "kernel-id":
		return []string{i.KernelID}
	case "ramdisk-id":
		return []string{i.RamdiskID}
	case "name":
		return []string{i.Name}
	case "owner-id":
		return []string{i.ImageOwnerID}
	case "root-device-type":
		return []string{i.RootDeviceType}
	case "root-device-name":
		return []string{i.RootDeviceName}
	case "state":
		return []string{i.ImageState}
	case "description":
		return []string{i.Description}
	case "virtualization-type":
		return []string{i.VirtualizationType}
	case "hypervisor":
		return []string{i.Hypervisor}
	case "manifest-location":
		return []string{i.ImageLocation}
	case "creation-date":
		return []string{i.CreationDate}
	}
	return nil
}

// LaunchPermission is one item of an image's launchPermission list.
type LaunchPermission struct {
	Group  string `xml:"group,omitempty"`
	UserID string `xml:"userId,omitempty"`
}

// AttributeValue wraps a single value as EC2 does (<description><value>).
type AttributeValue struct {
	Value string `xml:"value"`
}

// DescribeImageAttributeResponse is DescribeImageAttribute's answer.
type DescribeImageAttributeResponse struct {
	ec2.ResponseMeta
	ImageID            string             `xml:"imageId"`
	LaunchPermission   []LaunchPermission `xml:"launchPermission>item,omitempty"`
	Description        *AttributeValue    `xml:"description,omitempty"`
	Kernel             *AttributeValue    `xml:"kernel,omitempty"`
	Ramdisk            *AttributeValue    `xml:"ramdisk,omitempty"`
	BlockDeviceMapping []BlockDevice      `xml:"blockDeviceMapping>item,omitempty"`
}

// ownImage loads an image the caller owns (or any, for the admin).
func ownImage(ctx context.Context, q store.Querier, k *call, id string) (imageRow, error) {
	r, err := scanImage(q.QueryRow(ctx, `SELECT `+imageColumns+` FROM images WHERE id = ?`, id))
	if err == nil && !k.owns(r.Owner) {
		err = sql.ErrNoRows
	}
	if err != nil {
		return r, notFoundOr(err, ec2.Errorf("InvalidAMIID.NotFound", "The image id '[%s]' does not exist", id))
	}
	return r, nil
}

// describeImageAttributeParams are the parameters DescribeImageAttribute accepts.
var describeImageAttributeParams = []string{
	"ImageId", "Attribute",
}

func (c *Cloud) describeImageAttribute(ctx context.Context, k *call) (any, error) {
	id, err := k.required("ImageId")
	if err != nil {
		return nil, err
	}
	attr, err := k.required("Attribute")
	if err != nil {
		return nil, err
	}
	r, err := launchableImage(ctx, c.db, k, id)
	if err != nil {
		return nil, err
	}
	resp := &DescribeImageAttributeResponse{ImageID: id}
	switch attr {
	case "launchPermission":
		if !k.owns(r.Owner) {
			return nil, ec2.Errorf("AuthFailure", "Not authorized for image:%s", id)
		}
		resp.LaunchPermission = []LaunchPermission{}
		if r.Public {
			resp.LaunchPermission = append(resp.LaunchPermission, LaunchPermission{Group: "all"})
		}
		rows, err := c.db.Query(ctx, `SELECT account_id FROM launch_permissions WHERE image_id = ?`, id)
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		for rows.Next() {
			var acct string
			if err := rows.Scan(&acct); err != nil {
				return nil, err
			}
			resp.LaunchPermission = append(resp.LaunchPermission, LaunchPermission{UserID: acct})
		}
		if err := rows.Err(); err != nil {
			return nil, err
		}
	case "description":
		resp.Description = &AttributeValue{r.Description}
	case "kernel":
		resp.Kernel = &AttributeValue{r.KernelID}
	case "ramdisk":
		resp.Ramdisk = &AttributeValue{r.RamdiskID}
	case "blockDeviceMapping":
		resp.BlockDeviceMapping = imageItem(r, nil).BlockDeviceMapping
	default:
		return nil, ec2.Errorf("InvalidParameterValue", "Value (%s) for parameter attribute is invalid. Unknown attribute.", attr)
	}
	return resp, nil
}

// permissionChange is one add or remove of a launch permission.
type permissionChange struct {
	add   bool
	group string // "all"
	user  string // account id
}

func (k *call) permissionChanges() ([]permissionChange, error) {
	var out []permissionChange
	for _, op := range []string{"Add", "Remove"} {
		items, err := k.Query().Sub("LaunchPermission").List(op)
		if err != nil {
			return nil, err
		}
		for _, it := range items {
			if err := it.Check("Group", "UserId"); err != nil {
				return nil, err
			}
			out = append(out, permissionChange{add: op == "Add", group: it.String("Group"), user: it.String("UserId")})
		}
	}
	if opType := k.str("OperationType"); opType != "" {
		if opType != "add" && opType != "remove" {
			return nil, ec2.Errorf("InvalidParameterValue", "Value (%s) for parameter operationType is invalid.", opType)
		}
		users, err := k.list("UserId")
		if err != nil {
			return nil, err
		}
		groups, err := k.list("UserGroup")
		if err != nil {
			return nil, err
		}
		for _, u := range users {
			out = append(out, permissionChange{add: opType == "add", user: u})
		}
		for _, g := range groups {
			out = append(out, permissionChange{add: opType == "add", group: g})
		}
	}
	for _, pc := range out {
		if pc.group != "" && pc.group != "all" {
			return nil, ec2.Errorf("InvalidAMIAttributeItemValue", "Invalid attribute item value \"%s\" for group item type.", pc.group)
		}
		if pc.group == "" && (len(pc.user) != 12 || strings.Trim(pc.user, digits) != "") {
			return nil, ec2.Errorf("InvalidAMIAttributeItemValue", "Invalid attribute item value \"%s\" for userId item type.", pc.user)
		}
	}
	return out, nil
}

// modifyImageAttributeParams are the parameters ModifyImageAttribute accepts.
var modifyImageAttributeParams = []string{
	"ImageId", "Attribute", "Value", "OperationType", "UserId.N", "UserGroup.N", "LaunchPermission.Add.N.Group",
	"LaunchPermission.Add.N.UserId", "LaunchPermission.Remove.N.Group", "LaunchPermission.Remove.N.UserId",
	"Description.Value",
}

func (c *Cloud) modifyImageAttribute(ctx context.Context, k *call) (any, error) {
	id, err := k.required("ImageId")
	if err != nil {
		return nil, err
	}
	changes, err := k.permissionChanges()
	if err != nil {
		return nil, err
	}
	desc, hasDesc := k.Params["Description.Value"]
	if attr := k.str("Attribute"); attr == "description" && !hasDesc {
		desc, hasDesc = []string{k.str("Value")}, true
	}
	if len(changes) == 0 && !hasDesc {
		return nil, ec2.Errorf("MissingParameter", "The request must contain the parameter LaunchPermission or Description")
	}
	err = c.db.InTx(ctx, func(tx *store.Tx) error {
		if _, err := ownImage(ctx, tx, k, id); err != nil {
			return err
		}
		for _, pc := range changes {
			var err error
			switch {
			case pc.group == "all":
				_, err = tx.Exec(ctx, `UPDATE images SET public = ? WHERE id = ?`, boolInt(pc.add), id)
			case pc.add:
				_, err = tx.Exec(ctx, `DELETE FROM launch_permissions WHERE image_id = ? AND account_id = ?`, id, pc.user)
				if err == nil {
					_, err = tx.Exec(ctx, `INSERT INTO launch_permissions (image_id, account_id) VALUES (?, ?)`, id, pc.user)
				}
			default:
				_, err = tx.Exec(ctx, `DELETE FROM launch_permissions WHERE image_id = ? AND account_id = ?`, id, pc.user)
			}
			if err != nil {
				return err
			}
		}
		if hasDesc && len(desc) > 0 {
			if _, err := tx.Exec(ctx, `UPDATE images SET description = ? WHERE id = ?`, desc[0], id); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return ok()
}

// resetImageAttributeParams are the parameters ResetImageAttribute accepts.
var resetImageAttributeParams = []string{
	"ImageId", "Attribute",
}

func (c *Cloud) resetImageAttribute(ctx context.Context, k *call) (any, error) {
	id, err := k.required("ImageId")
	if err != nil {
		return nil, err
	}
	if attr, _ := k.required("Attribute"); attr != "launchPermission" {
		return nil, ec2.Errorf("InvalidParameterValue", "Value (%s) for parameter attribute is invalid. Only launchPermission can be reset.", attr)
	}
	err = c.db.InTx(ctx, func(tx *store.Tx) error {
		if _, err := ownImage(ctx, tx, k, id); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM launch_permissions WHERE image_id = ?`, id); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `UPDATE images SET public = 0 WHERE id = ?`, id)
		return err
	})
	if err != nil {
		return nil, err
	}
	return ok()
}
