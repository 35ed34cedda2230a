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
	"ironbark/controller/usage"
	"ironbark/internal/nodeapi"
	"ironbark/internal/store"
)

// maxRunCount bounds MaxCount in one RunInstances call.
const maxRunCount = 1000

// artifacts is what a node fetches for an instance, fixed at launch.
type artifacts struct {
	Image   nodeapi.Artifact  `json:"image"`
	Kernel  *nodeapi.Artifact `json:"kernel,omitempty"`
	Ramdisk *nodeapi.Artifact `json:"ramdisk,omitempty"`
}

// launch is a validated RunInstances request.
type launch struct {
	// queued and placed are how long the launch waited for this
	// controller's queue of launches and how long its batch held it (the
	// log line says both: which of the two a slow launch was); batch is
	// how many launches that batch placed (launchqueue.go).
	queued, placed time.Duration
	batch          int

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
	// Instance attributes set at launch (see attributes.go).
	noTerminate, noStop bool
	shutdown            string
	interfaceGroups     []string // NetworkInterface.1.SecurityGroupId.N
	publicAddress       bool     // NetworkInterface.1.AssociatePublicIpAddress
	publicAddressSet    bool     // ... given at all (false overrides the zone's auto-assign)
}

// runInstancesParams are the parameters RunInstances accepts: what it
// honours, and a few it accepts only with the value it can honour
// (checked in parseLaunch). Anything else is UnknownParameter.
var runInstancesParams = []string{"ImageId", "MinCount", "MaxCount", "InstanceType", "KeyName", "SecurityGroup.N",
	"SecurityGroupId.N", "UserData", "Placement.AvailabilityZone", "Placement.Tenancy", "Placement.GroupName",
	"KernelId", "RamdiskId", "ClientToken", "TagSpecification.N.ResourceType", "TagSpecification.N.Tag.N.Key",
	"TagSpecification.N.Tag.N.Value", "DisableApiTermination", "DisableApiStop", "InstanceInitiatedShutdownBehavior",
	"SubnetId", "Monitoring.Enabled", "EbsOptimized", "AdditionalInfo",
	"NetworkInterface.N.DeviceIndex", "NetworkInterface.N.SubnetId", "NetworkInterface.N.SecurityGroupId.N",
	"NetworkInterface.N.AssociatePublicIpAddress", "NetworkInterface.N.DeleteOnTermination",
	"NetworkInterface.N.Description"}

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
	if err := c.launchOptions(ctx, k, l); err != nil {
		return nil, err
	}
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
	// Tags for the instance are stored; a launch makes no volume (the root
	// disk is instance-store) and its one network interface is the
	// instance's, so tags for those are checked and not kept.
	specs, err := k.tagSpecs("instance", "volume", "network-interface")
	if err != nil {
		return nil, err
	}
	l.tags = specs["instance"]
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
	ids = append(ids, l.interfaceGroups...)
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
	res, err := c.placeAndInsertQueued(ctx, k, l)
	if errors.Is(err, errTokenUsed) || (store.IsUniqueViolation(err) && l.token != "") {
		// Another request with this token won the race: answer with its
		// reservation.
		if res, err := c.reservationByToken(ctx, k, l); err != nil || res != nil {
			return res, err
		}
	}
	if store.IsUniqueViolation(err) {
		// A MAC collided: draw again.
		res, err = c.placeAndInsertQueued(ctx, k, l)
	}
	if err != nil {
		return nil, err
	}
	c.log.Info("run instances", "account", k.account(), "reservation", res.ReservationID, "count", len(res.Instances),
		"type", l.vt.Name, "image", l.image.ID, "zone", res.Instances[0].Placement.AvailabilityZone,
		"queued", l.queued.Round(time.Microsecond), "placed", l.placed.Round(time.Microsecond), "batch", l.batch)
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
		res.Instances = append(res.Instances, c.instanceItem(r, tags[r.ID]))
	}
	return res, nil
}

// launchOptions reads what RunInstances accepts beside the image, count
// and type: instance attributes, the subnet (a zone's default subnet names
// the zone) and the one network interface, and the options ironbark can
// honour only in one way (no monitoring, no EBS optimisation, default
// tenancy, no placement group), refusing any other value.
func (c *Cloud) launchOptions(ctx context.Context, k *call, l *launch) error {
	q := k.Query()
	var err error
	if l.noTerminate, err = q.Bool("DisableApiTermination", false); err != nil {
		return err
	}
	if l.noStop, err = q.Bool("DisableApiStop", false); err != nil {
		return err
	}
	l.shutdown = q.Optional("InstanceInitiatedShutdownBehavior", "stop")
	if l.shutdown != "stop" && l.shutdown != "terminate" {
		return ec2.InvalidValue("InstanceInitiatedShutdownBehavior", l.shutdown, "Expected stop or terminate.")
	}
	for _, opt := range []struct{ name, want, why string }{
		{"Monitoring.Enabled", "false", "there is no detailed monitoring"},
		{"EbsOptimized", "false", "there are no EBS volumes"},
		{"Placement.Tenancy", "default", "instances share nodes"},
		{"Placement.GroupName", "", "there are no placement groups"},
	} {
		if v, ok := q.Lookup(opt.name); ok && v != "" && !strings.EqualFold(v, opt.want) {
			return ec2.Errorf("UnsupportedOperation", "%s=%s cannot be honoured here: %s.", opt.name, v, opt.why)
		}
	}
	subnet := q.String("SubnetId")
	nis, err := q.List("NetworkInterface")
	if err != nil {
		return err
	}
	if len(nis) > 1 {
		return ec2.Errorf("UnsupportedOperation", "An ironbark instance has one network interface; the request names %d.", len(nis))
	}
	if len(nis) == 1 {
		ni := nis[0]
		if idx := ni.Optional("DeviceIndex", "0"); idx != "0" {
			return ec2.InvalidValue(ni.Name("DeviceIndex"), idx, "The one network interface has device index 0.")
		}
		if l.publicAddress, err = ni.Bool("AssociatePublicIpAddress", false); err != nil {
			return err
		}
		_, l.publicAddressSet = ni.Lookup("AssociatePublicIpAddress")
		if del, err := ni.Bool("DeleteOnTermination", true); err != nil {
			return err
		} else if !del {
			return ec2.Errorf("UnsupportedOperation", "An instance's network interface ends with it (DeleteOnTermination=false cannot be honoured).")
		}
		if s := ni.String("SubnetId"); s != "" {
			if subnet != "" && s != subnet {
				return ec2.InvalidParameterCombination("Network interface subnet %s and instance subnet %s differ.", s, subnet)
			}
			subnet = s
		}
		ids, err := ni.Strings("SecurityGroupId")
		if err != nil {
			return err
		}
		if len(ids) > 0 {
			if q.Sub("SecurityGroup").Len() > 0 || q.Sub("SecurityGroupId").Len() > 0 {
				return ec2.InvalidParameterCombination("Network interfaces and an instance-level security groups may not be specified on the same request")
			}
			l.interfaceGroups = ids
		}
	}
	if subnet != "" {
		zone, err := c.subnetZone(ctx, k, subnet)
		if err != nil {
			return err
		}
		if l.zone != "" && l.zone != zone {
			return ec2.InvalidParameterCombination("Subnet %s is in zone %s, not %s.", subnet, zone, l.zone)
		}
		l.zone = zone
	}
	return nil
}

// place asks the placer for nodes, max instances if they fit, else min.
func (c *Cloud) place(ctx context.Context, l *launch) (string, []string, error) {
	zone, nodes, err := c.placer.Place(ctx, l.zone, l.vt, l.max)
	if errors.Is(err, ErrInsufficientCapacity) && c.forgetUsage() {
		// The cached usage may still count instances that ended since
		// it was read whole (usagecache.go): ask again on a fresh read.
		zone, nodes, err = c.placer.Place(ctx, l.zone, l.vt, l.max)
	}
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

// errTokenUsed says a client token was taken while this call waited.
var errTokenUsed = errors.New("client token already used")

// prepareLaunch places one launch of a batch, against the usage and
// addresses of the launches before it, and gathers its writes in the
// batch's (public addresses are written at once: each draw reads the
// ones before). A refusal before it wrote anything is its own answer
// (the batch goes on without it); one after is errLaunchAfterWrites.
// hasQuotas: the account has quota rows.
func (c *Cloud) prepareLaunch(ctx context.Context, lb *launchBatch, q *queuedLaunch, hasQuotas bool) (*placedLaunch, error) {
	k, l, tx := q.k, q.l, lb.tx
	now := k.now
	res := &RunInstancesResponse{Reservation: Reservation{ReservationID: newID("r", 17), OwnerID: k.account(), Groups: l.groups}}
	// Quotas are counted under the placement lock too, so parallel
	// launches cannot both take the last of an account's quota. An
	// account without a quota row has no limit (launchAllowance would
	// read the row to find so; a row set meanwhile, by a call that does
	// not take the placement lock, it would not have seen either).
	t0 := time.Now()
	allowed := l.max
	if hasQuotas {
		if err := lb.flushFor(ctx, k.account()); err != nil {
			return nil, err
		}
		var err error
		if allowed, err = launchAllowance(ctx, tx, k.account(), l.vt, l.min, l.max, l.publicAddress); err != nil {
			return nil, err
		}
	}
	pl := *l
	pl.max = allowed
	t1 := time.Now()
	zone, nodes, err := c.place(withBatchUsage(withLaunchSeq(ctx, lb.seq), lb.usage), &pl)
	t2 := time.Now()
	lb.took.quota += t1.Sub(t0)
	lb.took.place += t2.Sub(t1)
	if err != nil {
		return nil, err
	}
	zn := c.zoneNetOf(q.nets, zone)
	// The zone gives every launch a public address unless the request
	// asked for none.
	withPublic := l.publicAddress || (zn.publicIPs && !l.publicAddressSet && zn.mode != nodeapi.ModeSystem)
	if withPublic {
		if err := noPublicInSystem(zn, zone); err != nil {
			return nil, err
		}
	}
	if withPublic && !l.publicAddress {
		if err := lb.flushFor(ctx, k.account()); err != nil {
			return nil, err
		}
		if err := checkQuota(ctx, tx, k.account(), QuotaAddresses, int64(len(nodes))); err != nil {
			return nil, err
		}
	}
	// Past here a refusal may follow a write in the transaction (a group
	// network, a public address): the batch rolls back.
	after := func(err error) error {
		if err != nil && isRefusal(err) {
			return errLaunchAfterWrites{err}
		}
		return err
	}
	if zn.mode == nodeapi.ModeManaged {
		// The instances sit on their first group's network.
		if zn, err = c.groupNetwork(ctx, tx, zn, zone, l.groups[0].GroupID); err != nil {
			return nil, after(err)
		}
	}
	lb.picked = true
	ips, err := c.allocPrivateIPs(ctx, tx, zn, len(nodes), lb.seq)
	if err != nil {
		if zn.mode == nodeapi.ModeManaged {
			err = after(err)
		}
		return nil, err
	}
	t3 := time.Now()
	lb.took.addresses += t3.Sub(t2)
	netSubnet := "" // the group network's, in MANAGED mode
	if zn.vlan > 0 {
		netSubnet = zn.subnet.String()
	}
	kernelID, ramdiskID := "", ""
	if l.kernel != nil {
		kernelID = l.kernel.ID
	}
	if l.ramdisk != nil {
		ramdiskID = l.ramdisk.ID
	}
	for i, node := range nodes {
		res.Instances = append(res.Instances, Instance{InstanceID: newID("i", 17), MACAddress: newMAC(), nodeID: node, AMILaunchIndex: i, PrivateIPAddress: ips[i]})
	}
	if withPublic {
		// Each draw reads the addresses the ones before it took: their
		// rows are written at once, not batched.
		for i := range res.Instances {
			in := &res.Instances[i]
			if in.IPAddress, err = c.drawPublicAddress(ctx, tx); err != nil {
				return nil, after(err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO addresses (public_ip, allocation_id, account_id, instance_id, created_at, auto)
				VALUES (?, ?, ?, ?, ?, 1)`, in.IPAddress, newID("eipalloc", 17), k.account(), in.InstanceID, now.Unix()); err != nil {
				return nil, err
			}
		}
	}
	// The launch's writes go in the batch's, one round trip on PostgreSQL
	// at the end: the reads above (addresses, networks, quotas) do not
	// read what they write (a quota read flushes them first). The rows go
	// in one statement, and the tags in another: a statement per instance
	// was a round trip each, under the placement lock every launch queues
	// behind.
	b := &lb.b
	groupsJSON, _ := json.Marshal(l.groups)
	arts, _ := json.Marshal(artifacts{Image: *c.artifactOf(&l.image), Kernel: c.artifactOf(l.kernel), Ramdisk: c.artifactOf(l.ramdisk)})
	b.Exec(ctx, `INSERT INTO reservations (id, account_id, groups, created_at) VALUES (?, ?, ?, ?)`,
		res.ReservationID, k.account(), string(groupsJSON), now.Unix())
	if l.token != "" {
		b.Exec(ctx, `INSERT INTO client_tokens (account_id, token, reservation_id, created_at, params) VALUES (?, ?, ?, ?, ?)`,
			k.account(), l.token, res.ReservationID, now.Unix(), l.signature)
	}
	args := make([]any, 0, 29*len(nodes))
	for i, in := range res.Instances {
		args = append(args, in.InstanceID, k.account(), res.ReservationID, i, l.image.ID, kernelID, ramdiskID, l.vt.Name, l.keyName,
			zone, in.nodeID, in.MACAddress, in.PrivateIPAddress, nodeapi.StatePending, nodeapi.StateRunning, l.token, l.userData, now.Unix(),
			string(arts), l.pubKey, boolInt(l.noTerminate), boolInt(l.noStop), l.shutdown, k.Principal.User, zn.vlan, netSubnet,
			l.vt.Cores, l.vt.MemoryMiB, in.IPAddress)
	}
	if err := store.ExecRows(ctx, b, `INSERT INTO instances (id, account_id, reservation_id, launch_index, image_id, kernel_id,
		ramdisk_id, vm_type, key_name, zone, node_id, mac, private_ip, state, desired, client_token, user_data, launch_time,
		artifacts, public_key, disable_api_termination, disable_api_stop, shutdown_behavior, user_name, vlan, net_subnet,
		cores, memory_mib, public_ip) VALUES`, 29, args, ""); err != nil {
		return nil, err
	}
	// A new slice: the batch holds the instance rows' values until it runs.
	args = make([]any, 0, 5*len(l.tags)*len(res.Instances))
	for _, in := range res.Instances {
		for _, t := range l.tags {
			args = append(args, in.InstanceID, t.Key, t.Value, k.account(), "instance")
		}
	}
	if err := store.ExecRows(ctx, b, `INSERT INTO tags (resource_id, key, value, account_id, resource_type) VALUES`, 5, args, ""); err != nil {
		return nil, err
	}
	if !c.noUsage {
		var evs []usage.Event
		for i, in := range res.Instances {
			evs = append(evs, usage.Event{At: now, Kind: usage.KindInstance, Resource: in.InstanceID, State: nodeapi.StatePending,
				Account: k.account(), User: k.Principal.User, VMType: l.vt.Name, Cores: int64(l.vt.Cores), Zone: zone, Node: nodes[i]})
			if in.IPAddress != "" {
				evs = append(evs, addressEvent(now, in.IPAddress, usage.StateHeld, k.account(), k.Principal.User))
			}
		}
		if err := usage.Record(ctx, b, evs...); err != nil {
			return nil, err
		}
	}
	perNode := map[string]int{}
	for _, node := range nodes {
		perNode[node]++
	}
	// node_usage is written once for the batch (placeAndInsert); the
	// launches after this one place against its usage.
	byNode := lb.nodeUsage[l.vt.Name]
	if byNode == nil {
		byNode = map[string]int{}
		lb.nodeUsage[l.vt.Name] = byNode
	}
	for node, n := range perNode {
		byNode[node] += n
		lb.usage[node] = addNodeUsage(lb.usage[node], c.usageOfType(l.vt.Name, n))
	}
	lb.unflushed[k.account()] = true
	// Its nodes and groups are told with the batch's (placeAndInsert).
	for node := range perNode {
		lb.nodes[node] = true
	}
	for _, g := range l.groups {
		lb.groups[g.GroupID] = true
	}
	return &placedLaunch{q: q, res: res, zone: zone, nodes: nodes, perNode: perNode}, nil
}

// launchAnswer is RunInstances' answer for a committed launch.
func (c *Cloud) launchAnswer(p *placedLaunch) *RunInstancesResponse {
	k, l, res := p.q.k, p.q.l, p.res
	tags := map[string]string{}
	for _, t := range l.tags {
		tags[t.Key] = t.Value
	}
	for i := range res.Instances {
		row := instanceRow{ID: res.Instances[i].InstanceID, Owner: k.account(), ReservationID: res.ReservationID,
			LaunchIndex: i, ImageID: l.image.ID, VMType: l.vt.Name, KeyName: l.keyName, Zone: p.zone,
			NodeID: p.nodes[i], MAC: res.Instances[i].MACAddress, PrivateIP: res.Instances[i].PrivateIPAddress, PublicIP: res.Instances[i].IPAddress,
			State: nodeapi.StatePending, Desired: nodeapi.StateRunning,
			ClientToken: l.token, LaunchTime: k.now.Unix(), Groups: l.groups}
		if l.kernel != nil {
			row.KernelID = l.kernel.ID
		}
		if l.ramdisk != nil {
			row.RamdiskID = l.ramdisk.ID
		}
		res.Instances[i] = c.instanceItem(row, tags)
	}
	return res
}
