package controller

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"ironbark/controller/ec2"
	"ironbark/internal/nodeapi"
	"ironbark/internal/store"
)

// maxRunCount bounds MaxCount in one RunInstances call.
const maxRunCount = 1000

// stateCodes are EC2's numeric instance state codes.
var stateCodes = map[string]int{
	nodeapi.StatePending: 0, nodeapi.StateRunning: 16, nodeapi.StateShuttingDown: 32,
	nodeapi.StateTerminated: 48, nodeapi.StateStopping: 64, nodeapi.StateStopped: 80,
}

// InstanceState is an instance's state as EC2 shows it.
type InstanceState struct {
	Code int    `xml:"code"`
	Name string `xml:"name"`
}

func stateOf(name string) InstanceState { return InstanceState{Code: stateCodes[name], Name: name} }

// GroupIdentifier names a security group of a reservation or instance.
type GroupIdentifier struct {
	GroupID   string `xml:"groupId" json:"id"`
	GroupName string `xml:"groupName" json:"name"`
}

// Placement is where an instance runs.
type Placement struct {
	AvailabilityZone string `xml:"availabilityZone"`
	Tenancy          string `xml:"tenancy"`
}

// Monitoring is always disabled: there is no CloudWatch here.
type Monitoring struct {
	State string `xml:"state"`
}

// StateReason says why an instance changed state.
type StateReason struct {
	Code    string `xml:"code"`
	Message string `xml:"message"`
}

// Instance is one item of a reservation's instancesSet.
type Instance struct {
	InstanceID         string            `xml:"instanceId"`
	ImageID            string            `xml:"imageId"`
	State              InstanceState     `xml:"instanceState"`
	PrivateDNSName     string            `xml:"privateDnsName"`
	DNSName            string            `xml:"dnsName"`
	Reason             string            `xml:"reason"`
	KeyName            string            `xml:"keyName,omitempty"`
	AMILaunchIndex     int               `xml:"amiLaunchIndex"`
	InstanceType       string            `xml:"instanceType"`
	LaunchTime         ec2.Time          `xml:"launchTime"`
	Placement          Placement         `xml:"placement"`
	KernelID           string            `xml:"kernelId,omitempty"`
	RamdiskID          string            `xml:"ramdiskId,omitempty"`
	Monitoring         Monitoring        `xml:"monitoring"`
	PrivateIPAddress   string            `xml:"privateIpAddress,omitempty"`
	IPAddress          string            `xml:"ipAddress,omitempty"`
	Groups             []GroupIdentifier `xml:"groupSet>item"`
	StateReason        *StateReason      `xml:"stateReason,omitempty"`
	Architecture       string            `xml:"architecture"`
	RootDeviceType     string            `xml:"rootDeviceType"`
	RootDeviceName     string            `xml:"rootDeviceName"`
	VirtualizationType string            `xml:"virtualizationType"`
	ClientToken        string            `xml:"clientToken,omitempty"`
	Tags               []Tag             `xml:"tagSet>item"`
	Hypervisor         string            `xml:"hypervisor"`
	MACAddress         string            `xml:"-"`
	nodeID             string
	ownerID            string
	reservationID      string
}

// Reservation is a group of instances launched together.
type Reservation struct {
	ReservationID string            `xml:"reservationId"`
	OwnerID       string            `xml:"ownerId"`
	Groups        []GroupIdentifier `xml:"groupSet>item"`
	Instances     []Instance        `xml:"instancesSet>item"`
}

// RunInstancesResponse is RunInstances' answer: the new reservation.
type RunInstancesResponse struct {
	ec2.ResponseMeta
	Reservation
}

// DescribeInstancesResponse is DescribeInstances' answer.
type DescribeInstancesResponse struct {
	ec2.ResponseMeta
	Reservations []Reservation `xml:"reservationSet>item"`
	NextToken    string        `xml:"nextToken,omitempty"`
}

// artifacts is what a node fetches for an instance, fixed at launch.
type artifacts struct {
	Image   nodeapi.Artifact  `json:"image"`
	Kernel  *nodeapi.Artifact `json:"kernel,omitempty"`
	Ramdisk *nodeapi.Artifact `json:"ramdisk,omitempty"`
}

// launch is a validated RunInstances request.
type launch struct {
	image            imageRow
	kernel, ramdisk  *imageRow
	vt               nodeapi.VMType
	min, max         int
	zone             string
	keyName, pubKey  string
	groups           []GroupIdentifier
	userData         string // base64, as sent
	token, signature string
	tags             []Tag
}

func (c *Cloud) parseLaunch(ctx context.Context, k *call) (*launch, error) {
	q := k.Query()
	l := &launch{}
	imageID, err := q.Required("ImageId")
	if err != nil {
		return nil, err
	}
	minC, err := q.RequiredInt("MinCount")
	if err != nil {
		return nil, err
	}
	maxC, err := q.RequiredInt("MaxCount")
	if err != nil {
		return nil, err
	}
	if minC < 1 || maxC < minC {
		return nil, ec2.InvalidParameterValue("Invalid count: MinCount %d, MaxCount %d (need 1 <= MinCount <= MaxCount)", minC, maxC)
	}
	if maxC > maxRunCount {
		return nil, ec2.Errorf("InstanceLimitExceeded", "You have requested more instances (%d) than your current instance limit of %d allows for the specified instance type.", maxC, maxRunCount)
	}
	l.min, l.max = int(minC), int(maxC)
	vtName := q.Optional("InstanceType", "m1.small")
	vt, ok := c.vmTypes[vtName]
	if !ok {
		return nil, ec2.InvalidParameterValue("Invalid value '%s' for InstanceType.", vtName)
	}
	l.vt = vt
	l.zone = q.String("Placement.AvailabilityZone")
	l.token = q.String("ClientToken")
	if len(l.token) > 64 {
		return nil, ec2.InvalidParameterValue("Value for parameter ClientToken is too long (max 64 characters)")
	}
	l.userData = q.String("UserData")
	if l.userData != "" {
		raw, err := base64.StdEncoding.DecodeString(l.userData)
		if err != nil {
			return nil, ec2.InvalidParameterValue("Invalid BASE64 encoding of user data.")
		}
		if len(raw) > 16<<10 {
			return nil, ec2.InvalidParameterValue("User data is limited to 16384 bytes")
		}
	}
	if l.image, err = launchableImage(ctx, c.db, k, imageID); err != nil {
		return nil, err
	}
	if l.image.Kind != KindMachine {
		return nil, ec2.InvalidParameterValue("The image %s is a %s image, not a machine image", imageID, l.image.Kind)
	}
	for _, ref := range []struct {
		param, def, kind string
		dst              **imageRow
	}{{"KernelId", l.image.KernelID, KindKernel, &l.kernel}, {"RamdiskId", l.image.RamdiskID, KindRamdisk, &l.ramdisk}} {
		id := q.Optional(ref.param, ref.def)
		if id == "" {
			continue
		}
		r, err := launchableImage(ctx, c.db, k, id)
		if err == nil && r.Kind != ref.kind {
			err = ec2.NotFound("InvalidAMIID.NotFound", id)
		}
		if err != nil {
			return nil, err
		}
		*ref.dst = &r
	}
	if l.keyName = q.String("KeyName"); l.keyName != "" {
		err := c.db.QueryRow(ctx, `SELECT public_key FROM key_pairs WHERE account_id = ? AND name = ?`, k.account(), l.keyName).Scan(&l.pubKey)
		if err != nil {
			return nil, notFoundOr(err, ec2.NotFound("InvalidKeyPair.NotFound", l.keyName))
		}
	}
	if err := c.launchGroups(ctx, k, l); err != nil {
		return nil, err
	}
	specs, err := q.List("TagSpecification")
	if err != nil {
		return nil, err
	}
	for _, s := range specs {
		if rt := s.String("ResourceType"); rt != "instance" {
			continue
		}
		tags, err := s.List("Tag")
		if err != nil {
			return nil, err
		}
		for _, t := range tags {
			key := t.String("Key")
			if key == "" || len(key) > 128 || strings.HasPrefix(strings.ToLower(key), "aws:") {
				return nil, ec2.InvalidParameterValue("Invalid tag key %q", key)
			}
			l.tags = append(l.tags, Tag{Key: key, Value: t.String("Value")})
		}
	}
	// What makes two requests with one client token "the same".
	l.signature = strings.Join([]string{imageID, vtName, strconv.Itoa(l.min), strconv.Itoa(l.max), l.keyName, l.zone}, "|")
	return l, nil
}

func (c *Cloud) launchGroups(ctx context.Context, k *call, l *launch) error {
	names, err := k.list("SecurityGroup")
	if err != nil {
		return err
	}
	ids, err := k.list("SecurityGroupId")
	if err != nil {
		return err
	}
	if len(names) == 0 && len(ids) == 0 {
		if err := ensureDefaultGroup(ctx, c.db, k.account()); err != nil {
			return err
		}
		names = []string{DefaultGroup}
	}
	seen := map[string]bool{}
	add := func(id, name string) error {
		// A caller launches into their own groups, even the admin.
		var g GroupIdentifier
		var owner string
		q, args, arg := `SELECT id, name, account_id FROM security_groups WHERE id = ?`, []any{id}, id
		if id == "" {
			q, args, arg = `SELECT id, name, account_id FROM security_groups WHERE account_id = ? AND name = ?`, []any{k.account(), name}, name
		}
		err := c.db.QueryRow(ctx, q, args...).Scan(&g.GroupID, &g.GroupName, &owner)
		if err == nil && owner != k.account() {
			err = sql.ErrNoRows
		}
		if err != nil {
			return notFoundOr(err, ec2.NotFound("InvalidGroup.NotFound", arg))
		}
		if !seen[g.GroupID] {
			seen[g.GroupID] = true
			l.groups = append(l.groups, g)
		}
		return nil
	}
	for _, n := range names {
		if err := add("", n); err != nil {
			return err
		}
	}
	for _, id := range ids {
		if err := add(id, ""); err != nil {
			return err
		}
	}
	return nil
}

func (c *Cloud) artifactOf(r *imageRow) *nodeapi.Artifact {
	if r == nil {
		return nil
	}
	return &nodeapi.Artifact{ID: r.ID, Digest: r.Digest, Size: r.Size, Format: r.Format}
}

func (c *Cloud) runInstances(ctx context.Context, k *call) (any, error) {
	l, err := c.parseLaunch(ctx, k)
	if err != nil {
		return nil, err
	}
	if l.token != "" {
		if res, err := c.reservationByToken(ctx, k, l); err != nil || res != nil {
			return res, err
		}
	}
	if c.placer == nil {
		return nil, ec2.InsufficientInstanceCapacity("There is no cluster to run instances in.")
	}
	// Placement reads the committed usage and the insert is what reserves
	// it, so both happen under the store's placement lock: one placement
	// at a time across every controller on the database (PostgreSQL's
	// advisory lock; SQLite's write lock). runMu queues this controller's
	// own requests in memory instead of on the database.
	c.runMu.Lock()
	defer c.runMu.Unlock()
	res, err := c.placeAndInsert(ctx, k, l)
	if store.IsUniqueViolation(err) && l.token != "" {
		// Another request with this token won the race: answer with its
		// reservation.
		if res, err := c.reservationByToken(ctx, k, l); err != nil || res != nil {
			return res, err
		}
	}
	if store.IsUniqueViolation(err) {
		// A MAC collided: draw again.
		res, err = c.placeAndInsert(ctx, k, l)
	}
	if err != nil {
		return nil, err
	}
	nodesOf := make([]string, len(res.Instances))
	for i, in := range res.Instances {
		nodesOf[i] = in.nodeID
	}
	c.notify(nodesOf...)
	c.log.Info("run instances", "account", k.account(), "reservation", res.ReservationID, "count", len(res.Instances),
		"type", l.vt.Name, "image", l.image.ID, "zone", res.Instances[0].Placement.AvailabilityZone)
	return res, nil
}

// place asks the placer for nodes, max instances if they fit, else min.
func (c *Cloud) place(ctx context.Context, l *launch) (string, []string, error) {
	zone, nodes, err := c.placer.Place(ctx, l.zone, l.vt, l.max)
	if errors.Is(err, ErrInsufficientCapacity) && l.min < l.max {
		zone, nodes, err = c.placer.Place(ctx, l.zone, l.vt, l.min)
	}
	switch {
	case errors.Is(err, ErrInsufficientCapacity):
		return "", nil, ec2.InsufficientInstanceCapacity("There is not enough capacity to fulfill your request for %d %s instance(s).", l.min, l.vt.Name)
	case errors.Is(err, ErrNoSuchZone):
		return "", nil, ec2.InvalidParameterValue("Invalid availability zone: [%s]", l.zone)
	case err != nil:
		return "", nil, fmt.Errorf("place instances: %w", err)
	}
	if len(nodes) < l.min {
		return "", nil, ec2.InsufficientInstanceCapacity("There is not enough capacity to fulfill your request for %d %s instance(s).", l.min, l.vt.Name)
	}
	return zone, nodes, nil
}

// placeAndInsert places the launch and persists its reservation in one
// transaction that holds the placement lock from before Place reads the
// usage until the instances that use it are committed.
func (c *Cloud) placeAndInsert(ctx context.Context, k *call, l *launch) (*RunInstancesResponse, error) {
	now := k.now
	res := &RunInstancesResponse{Reservation: Reservation{ReservationID: newID("r", 17), OwnerID: k.account(), Groups: l.groups}}
	groupsJSON, _ := json.Marshal(l.groups)
	arts, _ := json.Marshal(artifacts{Image: *c.artifactOf(&l.image), Kernel: c.artifactOf(l.kernel), Ramdisk: c.artifactOf(l.ramdisk)})
	var zone string
	var nodes []string
	err := c.db.InTx(ctx, func(tx *store.Tx) error {
		if err := tx.LockPlacement(ctx); err != nil {
			return err
		}
		var err error
		if zone, nodes, err = c.place(ctx, l); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO reservations (id, account_id, groups, created_at) VALUES (?, ?, ?, ?)`,
			res.ReservationID, k.account(), string(groupsJSON), now.Unix()); err != nil {
			return err
		}
		if l.token != "" {
			if _, err := tx.Exec(ctx, `INSERT INTO client_tokens (account_id, token, reservation_id, created_at, params) VALUES (?, ?, ?, ?, ?)`,
				k.account(), l.token, res.ReservationID, now.Unix(), l.signature); err != nil {
				return err
			}
		}
		taken, err := livePrivateIPs(ctx, tx)
		if err != nil {
			return err
		}
		res.Instances = res.Instances[:0]
		for i, node := range nodes {
			in := Instance{InstanceID: newID("i", 17), MACAddress: newMAC(), nodeID: node, AMILaunchIndex: i}
			if in.PrivateIPAddress, err = c.allocPrivateIP(taken); err != nil {
				return err
			}
			kernelID, ramdiskID := "", ""
			if l.kernel != nil {
				kernelID = l.kernel.ID
			}
			if l.ramdisk != nil {
				ramdiskID = l.ramdisk.ID
			}
			if _, err := tx.Exec(ctx, `INSERT INTO instances (id, account_id, reservation_id, launch_index, image_id, kernel_id,
				ramdisk_id, vm_type, key_name, zone, node_id, mac, private_ip, state, desired, client_token, user_data, launch_time,
				artifacts, public_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
				in.InstanceID, k.account(), res.ReservationID, i, l.image.ID, kernelID, ramdiskID, l.vt.Name, l.keyName,
				zone, node, in.MACAddress, in.PrivateIPAddress, nodeapi.StatePending, nodeapi.StateRunning, l.token, l.userData, now.Unix(),
				string(arts), l.pubKey); err != nil {
				return err
			}
			for _, t := range l.tags {
				if _, err := tx.Exec(ctx, `INSERT INTO tags (resource_id, key, value, account_id, resource_type) VALUES (?, ?, ?, ?, 'instance')`,
					in.InstanceID, t.Key, t.Value, k.account()); err != nil {
					return err
				}
			}
			res.Instances = append(res.Instances, in)
		}
		perNode := map[string]int{}
		for _, node := range nodes {
			perNode[node]++
		}
		for node, n := range perNode {
			if err := addUsage(ctx, tx, node, l.vt.Name, n); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	tags := map[string]string{}
	for _, t := range l.tags {
		tags[t.Key] = t.Value
	}
	for i := range res.Instances {
		row := instanceRow{ID: res.Instances[i].InstanceID, Owner: k.account(), ReservationID: res.ReservationID,
			LaunchIndex: i, ImageID: l.image.ID, VMType: l.vt.Name, KeyName: l.keyName, Zone: zone,
			NodeID: nodes[i], MAC: res.Instances[i].MACAddress, PrivateIP: res.Instances[i].PrivateIPAddress, State: nodeapi.StatePending, Desired: nodeapi.StateRunning,
			ClientToken: l.token, LaunchTime: now.Unix(), Groups: l.groups}
		if l.kernel != nil {
			row.KernelID = l.kernel.ID
		}
		if l.ramdisk != nil {
			row.RamdiskID = l.ramdisk.ID
		}
		res.Instances[i] = row.item(tags)
	}
	return res, nil
}

// reservationByToken answers a repeated RunInstances with the reservation
// its client token made, or nil when the token is new.
func (c *Cloud) reservationByToken(ctx context.Context, k *call, l *launch) (*RunInstancesResponse, error) {
	var resID, sig string
	err := c.db.QueryRow(ctx, `SELECT reservation_id, params FROM client_tokens WHERE account_id = ? AND token = ?`,
		k.account(), l.token).Scan(&resID, &sig)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("client token: %w", err)
	}
	if sig != l.signature {
		return nil, ec2.Errorf("IdempotentParameterMismatch", "Arguments on this idempotent request are inconsistent with arguments used in previous request(s).")
	}
	rows, err := c.instances(ctx, k, `i.reservation_id = ?`, resID)
	if err != nil {
		return nil, err
	}
	tags, err := loadTags(ctx, c.db, k, "instance")
	if err != nil {
		return nil, err
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].LaunchIndex < rows[j].LaunchIndex })
	res := &RunInstancesResponse{Reservation: Reservation{ReservationID: resID, OwnerID: k.account()}}
	for _, r := range rows {
		res.Groups = r.Groups
		res.Instances = append(res.Instances, r.item(tags[r.ID]))
	}
	return res, nil
}

// instanceRow is an instance as stored.
type instanceRow struct {
	ID, Owner, ReservationID           string
	LaunchIndex                        int
	ImageID, KernelID, RamdiskID       string
	VMType, KeyName, Zone, NodeID, MAC string
	PrivateIP, PublicIP                string
	State, Desired, Reason             string
	ClientToken                        string
	RebootSerial                       int
	LaunchTime, EndedAt                int64
	Groups                             []GroupIdentifier
}

const instanceColumns = `i.id, i.account_id, i.reservation_id, i.launch_index, i.image_id, i.kernel_id, i.ramdisk_id,
	i.vm_type, i.key_name, i.zone, i.node_id, i.mac, i.private_ip, i.public_ip, i.state, i.desired, i.reason,
	i.client_token, i.reboot_serial, i.launch_time, i.ended_at, r.groups`

// instances loads the caller's instances (every account's for the admin)
// matching cond, leaving out those terminated longer ago than the TTL.
func (c *Cloud) instances(ctx context.Context, k *call, cond string, args ...any) ([]instanceRow, error) {
	q := `SELECT ` + instanceColumns + ` FROM instances i JOIN reservations r ON r.id = i.reservation_id
		WHERE (i.ended_at = 0 OR i.ended_at > ?)`
	all := []any{k.now.Add(-c.cfg.TerminatedTTL).Unix()}
	if !k.admin() {
		q += ` AND i.account_id = ?`
		all = append(all, k.account())
	}
	if cond != "" {
		q += ` AND ` + cond
		all = append(all, args...)
	}
	rows, err := c.db.Query(ctx, q, all...)
	if err != nil {
		return nil, fmt.Errorf("load instances: %w", err)
	}
	defer rows.Close()
	groupCache := map[string][]GroupIdentifier{}
	var out []instanceRow
	for rows.Next() {
		var r instanceRow
		var groups string
		if err := rows.Scan(&r.ID, &r.Owner, &r.ReservationID, &r.LaunchIndex, &r.ImageID, &r.KernelID, &r.RamdiskID,
			&r.VMType, &r.KeyName, &r.Zone, &r.NodeID, &r.MAC, &r.PrivateIP, &r.PublicIP, &r.State, &r.Desired, &r.Reason,
			&r.ClientToken, &r.RebootSerial, &r.LaunchTime, &r.EndedAt, &groups); err != nil {
			return nil, err
		}
		gs, ok := groupCache[groups]
		if !ok {
			_ = json.Unmarshal([]byte(groups), &gs)
			groupCache[groups] = gs
		}
		r.Groups = gs
		out = append(out, r)
	}
	return out, rows.Err()
}

func (r instanceRow) item(tags map[string]string) Instance {
	in := Instance{
		InstanceID: r.ID, ImageID: r.ImageID, State: stateOf(r.State), Reason: r.Reason, KeyName: r.KeyName,
		AMILaunchIndex: r.LaunchIndex, InstanceType: r.VMType, LaunchTime: ec2.TimeOf(time.Unix(r.LaunchTime, 0)),
		Placement: Placement{AvailabilityZone: r.Zone, Tenancy: "default"}, KernelID: r.KernelID, RamdiskID: r.RamdiskID,
		Monitoring: Monitoring{State: "disabled"}, PrivateIPAddress: r.PrivateIP, IPAddress: r.PublicIP, Groups: r.Groups,
		Architecture: "x86_64", RootDeviceType: "instance-store", RootDeviceName: "/dev/sda1", VirtualizationType: "hvm",
		ClientToken: r.ClientToken, Tags: tagSet(tags), Hypervisor: "xen", MACAddress: r.MAC,
		nodeID: r.NodeID, ownerID: r.Owner, reservationID: r.ReservationID,
	}
	if r.State == nodeapi.StateTerminated {
		// A terminated instance has given its private address back.
		in.PrivateIPAddress = ""
	}
	if in.PrivateIPAddress != "" {
		in.PrivateDNSName = PrivateDNSName(in.PrivateIPAddress)
	}
	if r.PublicIP != "" {
		in.DNSName = r.PublicIP
	}
	if r.Reason != "" && (r.State == nodeapi.StateTerminated || r.State == nodeapi.StateStopped) {
		in.StateReason = &StateReason{Code: "Client.UserInitiatedShutdown", Message: r.Reason}
	}
	return in
}

var instanceFilters = []string{"instance-id", "instance-state-name", "instance-state-code", "instance-type", "image-id",
	"key-name", "availability-zone", "reservation-id", "private-ip-address", "ip-address", "owner-id", "group-id",
	"group-name", "instance.group-id", "instance.group-name", "client-token", "launch-index", "kernel-id", "ramdisk-id",
	"architecture", "root-device-type", "dns-name", "private-dns-name", "launch-time", "hypervisor",
	"virtualization-type", "placement-group-name", "tenancy", "monitoring-state"}

func (in *Instance) field(name string) []string {
	switch name {
	case "instance-id":
		return []string{in.InstanceID}
	case "instance-state-name":
		return []string{in.State.Name}
	case "instance-state-code":
		return []string{strconv.Itoa(in.State.Code)}
	case "instance-type":
		return []string{in.InstanceType}
	case "image-id":
		return []string{in.ImageID}
	case "key-name":
		return []string{in.KeyName}
	case "availability-zone":
		return []string{in.Placement.AvailabilityZone}
	case "reservation-id":
		return []string{in.reservationID}
	case "private-ip-address":
		return []string{in.PrivateIPAddress}
	case "ip-address":
		return []string{in.IPAddress}
	case "owner-id":
		return []string{in.ownerID}
	case "group-id", "instance.group-id":
		var out []string
		for _, g := range in.Groups {
			out = append(out, g.GroupID)
		}
		return out
	case "group-name", "instance.group-name":
		var out []string
		for _, g := range in.Groups {
			out = append(out, g.GroupName)
		}
		return out
	case "client-token":
		return []string{in.ClientToken}
	case "launch-index":
		return []string{strconv.Itoa(in.AMILaunchIndex)}
	case "kernel-id":
		return []string{in.KernelID}
	case "ramdisk-id":
		return []string{in.RamdiskID}
	case "architecture":
		return []string{in.Architecture}
	case "root-device-type":
		return []string{in.RootDeviceType}
	case "dns-name":
		return []string{in.DNSName}
	case "private-dns-name":
		return []string{in.PrivateDNSName}
	case "launch-time":
		return []string{in.LaunchTime.String()}
	case "hypervisor":
		return []string{in.Hypervisor}
	case "virtualization-type":
		return []string{in.VirtualizationType}
	case "tenancy":
		return []string{in.Placement.Tenancy}
	case "monitoring-state":
		return []string{in.Monitoring.State}
	}
	return nil
}

// selectInstances loads, filters and checks the instances a call names:
// every id asked for must be the caller's, or the call fails untouched.
func (c *Cloud) selectInstances(ctx context.Context, k *call, fs ec2.Filters) ([]Instance, error) {
	ids, err := k.list("InstanceId")
	if err != nil {
		return nil, err
	}
	for _, id := range ids {
		if !strings.HasPrefix(id, "i-") {
			return nil, ec2.Malformed("InvalidInstanceID.Malformed", id)
		}
	}
	var rows []instanceRow
	var few []string // the ids asked for, when few enough to query by
	if len(ids) > 0 && len(ids) <= 100 {
		few = ids
		rows, err = c.instances(ctx, k, `i.id IN (?`+strings.Repeat(`, ?`, len(ids)-1)+`)`, anySlice(ids)...)
	} else {
		rows, err = c.instances(ctx, k, ``)
	}
	if err != nil {
		return nil, err
	}
	tags, err := loadTags(ctx, c.db, k, "instance", few...)
	if err != nil {
		return nil, err
	}
	want := wanted(ids)
	out := make([]Instance, 0, len(rows))
	for _, r := range rows {
		if want != nil && !want[r.ID] {
			continue
		}
		in := r.item(tags[r.ID])
		if !matches(fs, tags[r.ID], in.field) {
			continue
		}
		out = append(out, in)
	}
	for _, id := range ids {
		if !containsFunc(rows, func(r instanceRow) bool { return r.ID == id }) {
			return nil, ec2.NotFound("InvalidInstanceID.NotFound", id)
		}
	}
	sortBy(out, func(in Instance) string { return in.InstanceID })
	return out, nil
}

// instancePage reads one page of the caller's instances in id order,
// bytewise on both engines.
func (c *Cloud) instancePage(ctx context.Context, k *call, p ec2.Page) ([]Instance, string, error) {
	id := `i.id`
	if c.db.Engine() == store.Postgres {
		id = `i.id COLLATE "C"`
	}
	rows, err := c.instances(ctx, k, id+` > ? ORDER BY `+id+` LIMIT ?`, p.After, p.Max+1)
	if err != nil {
		return nil, "", err
	}
	next := ""
	if len(rows) > p.Max {
		rows = rows[:p.Max]
		next = p.NextToken(rows[len(rows)-1].ID)
	}
	ids := make([]string, len(rows))
	for i, r := range rows {
		ids[i] = r.ID
	}
	var tags map[string]map[string]string
	if len(ids) > 0 {
		if tags, err = loadTags(ctx, c.db, k, "instance", ids...); err != nil {
			return nil, "", err
		}
	}
	out := make([]Instance, len(rows))
	for i, r := range rows {
		out[i] = r.item(tags[r.ID])
	}
	return out, next, nil
}

func anySlice(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

func (c *Cloud) describeInstances(ctx context.Context, k *call) (any, error) {
	fs, err := k.filters(instanceFilters...)
	if err != nil {
		return nil, err
	}
	p, err := k.page(5, 1000)
	if err != nil {
		return nil, err
	}
	if p.Max > 0 && k.Query().Has("InstanceId.1") {
		return nil, ec2.InvalidParameterCombination("The parameter instancesSet cannot be used with the parameter maxResults")
	}
	var page []Instance
	var next string
	if len(fs) == 0 && p.Max > 0 && !k.Query().Has("InstanceId.1") {
		// A plain page: let the store cut it, so that listing N instances
		// page by page costs O(N), not O(N) a page.
		page, next, err = c.instancePage(ctx, k, p)
	} else {
		var ins []Instance
		ins, err = c.selectInstances(ctx, k, fs)
		page, next = ec2.Paginate(ins, func(in Instance) string { return in.InstanceID }, p)
	}
	if err != nil {
		return nil, err
	}
	resp := &DescribeInstancesResponse{NextToken: next, Reservations: []Reservation{}}
	byRes := map[string]int{}
	for _, in := range page {
		i, ok := byRes[in.reservationID]
		if !ok {
			i = len(resp.Reservations)
			byRes[in.reservationID] = i
			resp.Reservations = append(resp.Reservations, Reservation{ReservationID: in.reservationID, OwnerID: in.ownerID, Groups: in.Groups})
		}
		resp.Reservations[i].Instances = append(resp.Reservations[i].Instances, in)
	}
	return resp, nil
}

// StateChange is one item of Terminate/Stop/StartInstances' answer.
type StateChange struct {
	InstanceID    string        `xml:"instanceId"`
	CurrentState  InstanceState `xml:"currentState"`
	PreviousState InstanceState `xml:"previousState"`
}

// StateChangeResponse is the answer of Terminate, Stop and StartInstances.
type StateChangeResponse struct {
	ec2.ResponseMeta
	Instances []StateChange `xml:"instancesSet>item"`
}

// transition says what a request does to an instance in a state: the new
// state and desired state, or an error.
type transition func(state string) (next, desired string, err error)

func (c *Cloud) changeState(ctx context.Context, k *call, verb string, t transition) (*StateChangeResponse, error) {
	ids, err := k.list("InstanceId")
	if err != nil {
		return nil, err
	}
	if len(ids) == 0 {
		return nil, ec2.MissingParameter("InstanceId")
	}
	resp := &StateChangeResponse{}
	var nodes []string
	err = c.db.InTx(ctx, func(tx *store.Tx) error {
		resp.Instances, nodes = resp.Instances[:0], nodes[:0]
		for _, id := range ids {
			var owner, state, desired, node, vmType string
			err := tx.QueryRow(ctx, `SELECT account_id, state, desired, node_id, vm_type FROM instances WHERE id = ?`, id).
				Scan(&owner, &state, &desired, &node, &vmType)
			if err == nil && !k.owns(owner) {
				err = sql.ErrNoRows
			}
			if err != nil {
				return notFoundOr(err, ec2.NotFound("InvalidInstanceID.NotFound", id))
			}
			next, nextDesired, err := t(state)
			if err != nil {
				return err
			}
			if next != state || nextDesired != desired {
				ended := int64(0)
				if next == nodeapi.StateTerminated {
					ended = k.now.Unix()
					if err := addUsage(ctx, tx, node, vmType, -1); err != nil {
						return err
					}
				}
				if _, err := tx.Exec(ctx, `UPDATE instances SET state = ?, desired = ?, reason = ?,
					ended_at = CASE WHEN ? > 0 THEN ? ELSE ended_at END WHERE id = ?`,
					next, nextDesired, fmt.Sprintf("User initiated (%s)", k.now.UTC().Format("2006-01-02 15:04:05 MST")),
					ended, ended, id); err != nil {
					return err
				}
			}
			if nextDesired == nodeapi.StateTerminated {
				if _, err := tx.Exec(ctx, `UPDATE addresses SET instance_id = '', association_id = '' WHERE instance_id = ?`, id); err != nil {
					return err
				}
				if _, err := tx.Exec(ctx, `UPDATE instances SET public_ip = '' WHERE id = ?`, id); err != nil {
					return err
				}
			}
			nodes = append(nodes, node)
			resp.Instances = append(resp.Instances, StateChange{InstanceID: id, CurrentState: stateOf(next), PreviousState: stateOf(state)})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	c.notify(nodes...)
	c.log.Info(verb+" instances", "account", k.account(), "instances", ids)
	return resp, nil
}

func incorrectState(state string) error {
	return ec2.Errorf("IncorrectInstanceState", "This instance is in the '%s' state, which is not valid for this operation.", state)
}

func (c *Cloud) terminateInstances(ctx context.Context, k *call) (any, error) {
	return c.changeState(ctx, k, "terminate", func(state string) (string, string, error) {
		if state == nodeapi.StateTerminated {
			return state, nodeapi.StateTerminated, nil
		}
		return nodeapi.StateShuttingDown, nodeapi.StateTerminated, nil
	})
}

func (c *Cloud) stopInstances(ctx context.Context, k *call) (any, error) {
	return c.changeState(ctx, k, "stop", func(state string) (string, string, error) {
		switch state {
		case nodeapi.StatePending, nodeapi.StateRunning:
			return nodeapi.StateStopping, nodeapi.StateStopped, nil
		case nodeapi.StateStopping, nodeapi.StateStopped:
			return state, nodeapi.StateStopped, nil
		}
		return "", "", incorrectState(state)
	})
}

func (c *Cloud) startInstances(ctx context.Context, k *call) (any, error) {
	return c.changeState(ctx, k, "start", func(state string) (string, string, error) {
		switch state {
		case nodeapi.StateStopped:
			return nodeapi.StatePending, nodeapi.StateRunning, nil
		case nodeapi.StatePending, nodeapi.StateRunning:
			return state, nodeapi.StateRunning, nil
		}
		return "", "", incorrectState(state)
	})
}

func (c *Cloud) rebootInstances(ctx context.Context, k *call) (any, error) {
	ids, err := k.list("InstanceId")
	if err != nil {
		return nil, err
	}
	if len(ids) == 0 {
		return nil, ec2.MissingParameter("InstanceId")
	}
	var nodes []string
	err = c.db.InTx(ctx, func(tx *store.Tx) error {
		nodes = nodes[:0]
		for _, id := range ids {
			var owner, state, node string
			err := tx.QueryRow(ctx, `SELECT account_id, state, node_id FROM instances WHERE id = ?`, id).Scan(&owner, &state, &node)
			if err == nil && !k.owns(owner) {
				err = sql.ErrNoRows
			}
			if err != nil {
				return notFoundOr(err, ec2.NotFound("InvalidInstanceID.NotFound", id))
			}
			if state == nodeapi.StateTerminated || state == nodeapi.StateShuttingDown {
				return incorrectState(state)
			}
			if state != nodeapi.StateRunning {
				continue // EC2 reboots only running instances, quietly
			}
			if _, err := tx.Exec(ctx, `UPDATE instances SET reboot_serial = reboot_serial + 1 WHERE id = ?`, id); err != nil {
				return err
			}
			nodes = append(nodes, node)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	c.notify(nodes...)
	return ok()
}

// StatusDetail is one check of an instance's status.
type StatusDetail struct {
	Name   string `xml:"name"`
	Status string `xml:"status"`
}

// StatusSummary is the system or instance status of DescribeInstanceStatus.
type StatusSummary struct {
	Status  string         `xml:"status"`
	Details []StatusDetail `xml:"details>item"`
}

// InstanceStatusItem is one item of DescribeInstanceStatus.
type InstanceStatusItem struct {
	InstanceID       string        `xml:"instanceId"`
	AvailabilityZone string        `xml:"availabilityZone"`
	InstanceState    InstanceState `xml:"instanceState"`
	SystemStatus     StatusSummary `xml:"systemStatus"`
	InstanceStatus   StatusSummary `xml:"instanceStatus"`
}

// DescribeInstanceStatusResponse is DescribeInstanceStatus' answer.
type DescribeInstanceStatusResponse struct {
	ec2.ResponseMeta
	Statuses  []InstanceStatusItem `xml:"instanceStatusSet>item"`
	NextToken string               `xml:"nextToken,omitempty"`
}

func statusSummary(state string) StatusSummary {
	switch state {
	case nodeapi.StateRunning:
		return StatusSummary{Status: "ok", Details: []StatusDetail{{"reachability", "passed"}}}
	case nodeapi.StatePending:
		return StatusSummary{Status: "initializing", Details: []StatusDetail{{"reachability", "initializing"}}}
	}
	return StatusSummary{Status: "not-applicable", Details: []StatusDetail{{"reachability", "not-applicable"}}}
}

func (c *Cloud) describeInstanceStatus(ctx context.Context, k *call) (any, error) {
	fs, err := k.filters("instance-state-name", "instance-state-code", "availability-zone",
		"instance-status.status", "system-status.status", "instance-status.reachability", "system-status.reachability")
	if err != nil {
		return nil, err
	}
	p, err := k.page(5, 1000)
	if err != nil {
		return nil, err
	}
	all, err := k.Query().Bool("IncludeAllInstances", false)
	if err != nil {
		return nil, err
	}
	ins, err := c.selectInstances(ctx, k, nil)
	if err != nil {
		return nil, err
	}
	var out []InstanceStatusItem
	for _, in := range ins {
		if !all && in.State.Name != nodeapi.StateRunning {
			continue
		}
		st := InstanceStatusItem{InstanceID: in.InstanceID, AvailabilityZone: in.Placement.AvailabilityZone,
			InstanceState: in.State, SystemStatus: statusSummary(in.State.Name), InstanceStatus: statusSummary(in.State.Name)}
		if !matches(fs, nil, func(n string) []string {
			switch n {
			case "instance-state-name":
				return []string{st.InstanceState.Name}
			case "instance-state-code":
				return []string{strconv.Itoa(st.InstanceState.Code)}
			case "availability-zone":
				return []string{st.AvailabilityZone}
			case "instance-status.status", "system-status.status":
				return []string{st.SystemStatus.Status}
			}
			return []string{st.SystemStatus.Details[0].Status}
		}) {
			continue
		}
		out = append(out, st)
	}
	page, next := ec2.Paginate(out, func(s InstanceStatusItem) string { return s.InstanceID }, p)
	return &DescribeInstanceStatusResponse{Statuses: page, NextToken: next}, nil
}

// GetConsoleOutputResponse is GetConsoleOutput's answer.
type GetConsoleOutputResponse struct {
	ec2.ResponseMeta
	InstanceID string    `xml:"instanceId"`
	Timestamp  *ec2.Time `xml:"timestamp,omitempty"`
	Output     string    `xml:"output"`
}

func (c *Cloud) getConsoleOutput(ctx context.Context, k *call) (any, error) {
	id, err := k.required("InstanceId")
	if err != nil {
		return nil, err
	}
	var owner, console string
	var at int64
	err = c.db.QueryRow(ctx, `SELECT account_id, console, console_at FROM instances WHERE id = ?`, id).Scan(&owner, &console, &at)
	if err == nil && !k.owns(owner) {
		err = sql.ErrNoRows
	}
	if err != nil {
		return nil, notFoundOr(err, ec2.NotFound("InvalidInstanceID.NotFound", id))
	}
	resp := &GetConsoleOutputResponse{InstanceID: id, Output: console}
	if at > 0 {
		t := ec2.TimeOf(time.Unix(at, 0))
		resp.Timestamp = &t
	}
	return resp, nil
}
