package controller

import (
	"context"
	"database/sql"
	"strconv"
	"strings"
	"time"

	"ironbark/controller/ec2"
	"ironbark/internal/nodeapi"
	"ironbark/internal/store"
)

// DescribeInstancesResponse is DescribeInstances' answer.
type DescribeInstancesResponse struct {
	ec2.ResponseMeta
	Reservations []Reservation `xml:"reservationSet>item"`
	NextToken    string        `xml:"nextToken,omitempty"`
}

var instanceFilters = []string{"instance-id", "instance-state-name", "instance-state-code", "instance-type", "image-id",
	"key-name", "availability-zone", "reservation-id", "private-ip-address", "ip-address", "owner-id", "group-id",
	"group-name", "instance.group-id", "instance.group-name", "client-token", "launch-index", "kernel-id", "ramdisk-id",
	"architecture", "root-device-type", "dns-name", "private-dns-name", "launch-time", "hypervisor",
	"virtualization-type", "placement-group-name", "tenancy", "monitoring-state", "vpc-id", "subnet-id",
	"network-interface.network-interface-id", "network-interface.subnet-id", "network-interface.vpc-id",
	"network-interface.group-id", "network-interface.mac-address", "network-interface.private-dns-name",
	"network-interface.addresses.private-ip-address", "source-dest-check"}

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
	case "vpc-id", "network-interface.vpc-id":
		return []string{in.VpcID}
	case "subnet-id", "network-interface.subnet-id":
		return []string{in.SubnetID}
	case "source-dest-check":
		return []string{strconv.FormatBool(in.SourceDestCheck)}
	}
	if name, ok := strings.CutPrefix(name, "network-interface."); ok {
		var out []string
		for _, ni := range in.NetworkInterfaces {
			switch name {
			case "network-interface-id":
				out = append(out, ni.NetworkInterfaceID)
			case "group-id":
				for _, g := range ni.Groups {
					out = append(out, g.GroupID)
				}
			case "mac-address":
				out = append(out, ni.MACAddress)
			case "private-dns-name":
				out = append(out, ni.PrivateDNSName)
			case "addresses.private-ip-address":
				out = append(out, ni.PrivateIPAddress)
			}
		}
		return out
	}
	return nil
}

// instanceDescriber is the pipeline's view of instances: every instance
// the caller may see, by id; the store cuts plain pages.
func (c *Cloud) instanceDescriber() *describer[Instance] {
	return &describer[Instance]{
		ids: []idParam[Instance]{{name: "InstanceId", of: func(in Instance) string { return in.InstanceID },
			check: func(id string) error {
				if !strings.HasPrefix(id, "i-") {
					return ec2.Malformed("InvalidInstanceID.Malformed", id)
				}
				return nil
			},
			notFound: func(id string) error { return ec2.NotFound("InvalidInstanceID.NotFound", id) }}},
		filters: instanceFilters,
		field:   func(in Instance, name string) []string { return in.field(name) },
		tags:    func(in Instance) []Tag { return in.Tags },
		key:     func(in Instance) string { return in.InstanceID },
		paged:   true, lo: 5, hi: 1000,
		load:     c.loadInstances,
		loadPage: c.instancePage,
	}
}

// loadInstances loads the instances the caller may see, only those asked
// for when they are few enough to query by.
func (c *Cloud) loadInstances(ctx context.Context, k *call, ids map[string][]string) ([]Instance, error) {
	asked := ids["InstanceId"]
	var rows []instanceRow
	var few []string
	var err error
	if len(asked) > 0 && len(asked) <= 100 {
		few = asked
		rows, err = c.instances(ctx, k, `i.id IN (?`+strings.Repeat(`, ?`, len(asked)-1)+`)`, anySlice(asked)...)
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
	out := make([]Instance, len(rows))
	for i, r := range rows {
		out[i] = c.instanceItem(r, tags[r.ID])
	}
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
		out[i] = c.instanceItem(r, tags[r.ID])
	}
	return out, next, nil
}

// describeInstancesParams are the parameters DescribeInstances accepts.
var describeInstancesParams = []string{
	"InstanceId.N", "Filter.N.Name", "Filter.N.Value.N", "MaxResults", "NextToken",
}

func (c *Cloud) describeInstances(ctx context.Context, k *call) (any, error) {
	if k.Query().Has("MaxResults") && k.Query().Sub("InstanceId").Len() > 0 {
		return nil, ec2.InvalidParameterCombination("The parameter instancesSet cannot be used with the parameter maxResults")
	}
	page, next, err := c.instanceDescriber().run(ctx, k)
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

// describeInstanceStatusParams are the parameters DescribeInstanceStatus accepts.
var describeInstanceStatusParams = []string{
	"InstanceId.N", "IncludeAllInstances", "Filter.N.Name", "Filter.N.Value.N", "MaxResults", "NextToken",
}

func (c *Cloud) describeInstanceStatus(ctx context.Context, k *call) (any, error) {
	all, err := k.Query().Bool("IncludeAllInstances", false)
	if err != nil {
		return nil, err
	}
	inst := c.instanceDescriber()
	d := &describer[InstanceStatusItem]{
		ids: []idParam[InstanceStatusItem]{{name: "InstanceId", of: func(s InstanceStatusItem) string { return s.InstanceID },
			check: inst.ids[0].check, notFound: inst.ids[0].notFound}},
		filters: []string{"instance-state-name", "instance-state-code", "availability-zone",
			"instance-status.status", "system-status.status", "instance-status.reachability", "system-status.reachability"},
		field: func(st InstanceStatusItem, n string) []string {
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
		},
		key:   func(s InstanceStatusItem) string { return s.InstanceID },
		paged: true, lo: 5, hi: 1000,
		load: func(ctx context.Context, k *call, ids map[string][]string) ([]InstanceStatusItem, error) {
			ins, err := c.loadInstances(ctx, k, ids)
			if err != nil {
				return nil, err
			}
			nodes, err := c.nodeStatus(ctx)
			if err != nil {
				return nil, err
			}
			out := make([]InstanceStatusItem, len(ins))
			for i, in := range ins {
				out[i] = InstanceStatusItem{InstanceID: in.InstanceID, AvailabilityZone: in.Placement.AvailabilityZone,
					InstanceState: in.State, SystemStatus: statusSummary(in.State.Name), InstanceStatus: statusSummary(in.State.Name)}
				if impaired(in, nodes) {
					// Its node is silent or gone: the host failed, not the guest.
					out[i].SystemStatus = StatusSummary{Status: "impaired", Details: []StatusDetail{{"reachability", "failed"}}}
					out[i].InstanceStatus = StatusSummary{Status: "insufficient-data", Details: []StatusDetail{{"reachability", "insufficient-data"}}}
				}
			}
			return out, nil
		},
		keep: func(s InstanceStatusItem) bool { return all || s.InstanceState.Name == nodeapi.StateRunning },
	}
	page, next, err := d.run(ctx, k)
	if err != nil {
		return nil, err
	}
	return &DescribeInstanceStatusResponse{Statuses: page, NextToken: next}, nil
}

// GetConsoleOutputResponse is GetConsoleOutput's answer.
type GetConsoleOutputResponse struct {
	ec2.ResponseMeta
	InstanceID string   `xml:"instanceId"`
	Timestamp  ec2.Time `xml:"timestamp"`
	Output     string   `xml:"output"`
}

// getConsoleOutputParams are the parameters GetConsoleOutput accepts.
var getConsoleOutputParams = []string{
	"InstanceId", "Latest",
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
	// Eucalyptus and EC2 always carry a timestamp: when the output was
	// last seen, or now when there is none yet.
	when := k.now
	if at > 0 {
		when = time.Unix(at, 0)
	}
	resp := &GetConsoleOutputResponse{InstanceID: id, Timestamp: ec2.TimeOf(when), Output: console}
	return resp, nil
}
