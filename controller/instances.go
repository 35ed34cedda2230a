package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"ironbark/controller/ec2"
	"ironbark/internal/nodeapi"
)

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
	InstanceID         string             `xml:"instanceId"`
	ImageID            string             `xml:"imageId"`
	State              InstanceState      `xml:"instanceState"`
	PrivateDNSName     string             `xml:"privateDnsName"`
	DNSName            string             `xml:"dnsName"`
	Reason             string             `xml:"reason"`
	KeyName            string             `xml:"keyName,omitempty"`
	AMILaunchIndex     int                `xml:"amiLaunchIndex"`
	InstanceType       string             `xml:"instanceType"`
	LaunchTime         ec2.Time           `xml:"launchTime"`
	Placement          Placement          `xml:"placement"`
	KernelID           string             `xml:"kernelId,omitempty"`
	RamdiskID          string             `xml:"ramdiskId,omitempty"`
	Monitoring         Monitoring         `xml:"monitoring"`
	PrivateIPAddress   string             `xml:"privateIpAddress,omitempty"`
	IPAddress          string             `xml:"ipAddress,omitempty"`
	Groups             []GroupIdentifier  `xml:"groupSet>item"`
	StateReason        *StateReason       `xml:"stateReason,omitempty"`
	Architecture       string             `xml:"architecture"`
	RootDeviceType     string             `xml:"rootDeviceType"`
	RootDeviceName     string             `xml:"rootDeviceName"`
	VirtualizationType string             `xml:"virtualizationType"`
	ClientToken        string             `xml:"clientToken,omitempty"`
	VpcID              string             `xml:"vpcId,omitempty"`
	SubnetID           string             `xml:"subnetId,omitempty"`
	SourceDestCheck    bool               `xml:"sourceDestCheck"`
	NetworkInterfaces  []NetworkInterface `xml:"networkInterfaceSet>item"`
	Tags               []Tag              `xml:"tagSet>item"`
	Hypervisor         string             `xml:"hypervisor"`
	MACAddress         string             `xml:"-"`
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
			gs = decodeGroups(groups)
			groupCache[groups] = gs
		}
		r.Groups = gs
		out = append(out, r)
	}
	return out, rows.Err()
}

// instanceItem is an instance as EC2 shows it, in the default VPC and its
// zone's default subnet, with its one network interface.
func (c *Cloud) instanceItem(r instanceRow, tags map[string]string) Instance {
	in := r.item(tags)
	if r.State != nodeapi.StateTerminated {
		in.VpcID, in.SubnetID, in.SourceDestCheck = c.defaultVPCID(), c.defaultSubnetID(r.Zone), true
		in.NetworkInterfaces = []NetworkInterface{c.networkInterface(in)}
	}
	return in
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
	if r.State == nodeapi.StateTerminated || r.State == nodeapi.StateStopped {
		in.StateReason = stateReasonOf(r.Reason)
	}
	return in
}

func anySlice(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// decodeGroups reads a reservation's groups as stored (JSON).
func decodeGroups(s string) []GroupIdentifier {
	var gs []GroupIdentifier
	_ = json.Unmarshal([]byte(s), &gs)
	return gs
}
