package controller

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"ironbark/controller/ec2"
	"ironbark/internal/nodeapi"
)

// ironbark has no VPC mode: every instance is on the one instance subnet
// of its cluster. Automation tools (Ansible's amazon.aws, Terraform's AWS
// provider, SDK helpers) still ask for the default VPC and a default
// subnet per zone before anything else, so the cloud shows them, read-only
// and synthetic: one default VPC per region whose CIDR is the instance
// subnet, one default subnet per availability zone on that same subnet,
// and one network interface per instance. Their ids are derived from the
// region and zone names, so they are stable across restarts and
// controllers without being stored.

// defaultVPCID is the region's synthetic default VPC.
func (c *Cloud) defaultVPCID() string { return derivedID("vpc", "vpc", c.cfg.Region) }

// defaultSubnetID is a zone's synthetic default subnet.
func (c *Cloud) defaultSubnetID(zone string) string {
	return derivedID("subnet", "subnet", c.cfg.Region, zone)
}

// derivedID is prefix-<17 hex digits> from a hash of the parts.
func derivedID(prefix string, parts ...string) string {
	h := sha256.Sum256([]byte("ironbark\x00" + strings.Join(parts, "\x00")))
	return prefix + "-" + hex.EncodeToString(h[:])[:17]
}

// networkInterfaceID is an instance's one interface: eni- and the
// instance id's digits, so either names the other.
func networkInterfaceID(instanceID string) string {
	return "eni-" + strings.TrimPrefix(instanceID, "i-")
}

// VPC is one item of DescribeVpcs.
type VPC struct {
	VpcID           string           `xml:"vpcId"`
	OwnerID         string           `xml:"ownerId"`
	State           string           `xml:"state"`
	CidrBlock       string           `xml:"cidrBlock"`
	CidrAssociation []CidrAssociaton `xml:"cidrBlockAssociationSet>item"`
	DhcpOptionsID   string           `xml:"dhcpOptionsId"`
	InstanceTenancy string           `xml:"instanceTenancy"`
	IsDefault       bool             `xml:"isDefault"`
}

// CidrAssociaton is a VPC's CIDR block association.
type CidrAssociaton struct {
	AssociationID string `xml:"associationId"`
	CidrBlock     string `xml:"cidrBlock"`
	State         string `xml:"cidrBlockState>state"`
}

// DescribeVpcsResponse is DescribeVpcs' answer.
type DescribeVpcsResponse struct {
	ec2.ResponseMeta
	Vpcs      []VPC  `xml:"vpcSet>item"`
	NextToken string `xml:"nextToken,omitempty"`
}

// describeVpcsParams are the parameters DescribeVpcs accepts.
var describeVpcsParams = []string{
	"VpcId.N", "Filter.N.Name", "Filter.N.Value.N", "MaxResults", "NextToken",
}

func (c *Cloud) describeVpcs(ctx context.Context, k *call) (any, error) {
	cidr := c.subnet.String()
	d := &describer[VPC]{
		ids: []idParam[VPC]{{name: "VpcId", of: func(v VPC) string { return v.VpcID },
			notFound: func(id string) error { return ec2.NotFound("InvalidVpcID.NotFound", id) }}},
		filters: []string{"vpc-id", "is-default", "isDefault", "state", "cidr", "cidr-block-association.cidr-block",
			"cidrBlock", "owner-id", "dhcp-options-id"},
		field: func(v VPC, n string) []string {
			switch n {
			case "vpc-id":
				return []string{v.VpcID}
			case "is-default", "isDefault":
				return []string{strconv.FormatBool(v.IsDefault)}
			case "state":
				return []string{v.State}
			case "cidr", "cidr-block-association.cidr-block", "cidrBlock":
				return []string{v.CidrBlock}
			case "owner-id":
				return []string{v.OwnerID}
			}
			return []string{v.DhcpOptionsID}
		},
		key:   func(v VPC) string { return v.VpcID },
		paged: true, lo: 5, hi: 1000,
		load: func(context.Context, *call, map[string][]string) ([]VPC, error) {
			id := c.defaultVPCID()
			return []VPC{{VpcID: id, OwnerID: k.account(), State: "available", CidrBlock: cidr,
				CidrAssociation: []CidrAssociaton{{AssociationID: derivedID("vpc-cidr-assoc", id), CidrBlock: cidr, State: "associated"}},
				DhcpOptionsID:   "default", InstanceTenancy: "default", IsDefault: true}}, nil
		},
	}
	vpcs, next, err := d.run(ctx, k)
	if err != nil {
		return nil, err
	}
	return &DescribeVpcsResponse{Vpcs: vpcs, NextToken: next}, nil
}

// Subnet is one item of DescribeSubnets.
type Subnet struct {
	SubnetID                string `xml:"subnetId"`
	SubnetArn               string `xml:"subnetArn"`
	State                   string `xml:"state"`
	OwnerID                 string `xml:"ownerId"`
	VpcID                   string `xml:"vpcId"`
	CidrBlock               string `xml:"cidrBlock"`
	AvailableIPAddressCount int    `xml:"availableIpAddressCount"`
	AvailabilityZone        string `xml:"availabilityZone"`
	AvailabilityZoneID      string `xml:"availabilityZoneId"`
	DefaultForAz            bool   `xml:"defaultForAz"`
	MapPublicIPOnLaunch     bool   `xml:"mapPublicIpOnLaunch"`
	AssignIpv6OnCreation    bool   `xml:"assignIpv6AddressOnCreation"`
}

// DescribeSubnetsResponse is DescribeSubnets' answer.
type DescribeSubnetsResponse struct {
	ec2.ResponseMeta
	Subnets   []Subnet `xml:"subnetSet>item"`
	NextToken string   `xml:"nextToken,omitempty"`
}

// defaultSubnets are the zones' default subnets, for the caller.
func (c *Cloud) defaultSubnets(ctx context.Context, k *call) ([]Subnet, error) {
	var zones []Zone
	if c.placer != nil {
		var err error
		if zones, err = c.placer.Zones(ctx); err != nil {
			return nil, fmt.Errorf("describe subnets: %w", err)
		}
	}
	taken, err := livePrivateIPs(ctx, c.db)
	if err != nil {
		return nil, err
	}
	nets, err := c.zoneNets(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Subnet, 0, len(zones))
	for _, z := range zones {
		// Each zone shows its own instance subnet; zones that share the
		// cloud's default one share its free addresses.
		zn := c.zoneNetOf(nets, z.Name)
		used := 0
		for ip := range taken {
			if a, err := netip.ParseAddr(ip); err == nil && zn.subnet.Contains(a) {
				used++
			}
		}
		id := c.defaultSubnetID(z.Name)
		out = append(out, Subnet{SubnetID: id, SubnetArn: "arn:aws:ec2:" + c.cfg.Region + ":" + k.account() + ":subnet/" + id,
			State: "available", OwnerID: k.account(), VpcID: c.defaultVPCID(), CidrBlock: zn.subnet.String(),
			AvailableIPAddressCount: max(zn.pool.size()-used, 0), AvailabilityZone: z.Name, AvailabilityZoneID: c.cfg.Region + "-" + z.Name,
			DefaultForAz: true, MapPublicIPOnLaunch: zn.publicIPs})
	}
	return out, nil
}

// subnetZone returns the zone of a default subnet id, or InvalidSubnetID.NotFound.
func (c *Cloud) subnetZone(ctx context.Context, k *call, id string) (string, error) {
	subnets, err := c.defaultSubnets(ctx, k)
	if err != nil {
		return "", err
	}
	for _, s := range subnets {
		if s.SubnetID == id {
			return s.AvailabilityZone, nil
		}
	}
	return "", ec2.NotFound("InvalidSubnetID.NotFound", id)
}

// describeSubnetsParams are the parameters DescribeSubnets accepts.
var describeSubnetsParams = []string{
	"SubnetId.N", "Filter.N.Name", "Filter.N.Value.N", "MaxResults", "NextToken",
}

func (c *Cloud) describeSubnets(ctx context.Context, k *call) (any, error) {
	d := &describer[Subnet]{
		ids: []idParam[Subnet]{{name: "SubnetId", of: func(s Subnet) string { return s.SubnetID },
			notFound: func(id string) error { return ec2.NotFound("InvalidSubnetID.NotFound", id) }}},
		filters: []string{"subnet-id", "subnetId", "vpc-id", "vpcId", "availability-zone", "availabilityZone",
			"availability-zone-id", "default-for-az", "defaultForAz", "cidr-block", "cidrBlock", "cidr", "state",
			"owner-id", "subnet-arn", "map-public-ip-on-launch", "available-ip-address-count"},
		field: func(s Subnet, n string) []string {
			switch n {
			case "subnet-id", "subnetId":
				return []string{s.SubnetID}
			case "vpc-id", "vpcId":
				return []string{s.VpcID}
			case "availability-zone", "availabilityZone":
				return []string{s.AvailabilityZone}
			case "availability-zone-id":
				return []string{s.AvailabilityZoneID}
			case "default-for-az", "defaultForAz":
				return []string{strconv.FormatBool(s.DefaultForAz)}
			case "cidr-block", "cidrBlock", "cidr":
				return []string{s.CidrBlock}
			case "state":
				return []string{s.State}
			case "owner-id":
				return []string{s.OwnerID}
			case "subnet-arn":
				return []string{s.SubnetArn}
			case "map-public-ip-on-launch":
				return []string{strconv.FormatBool(s.MapPublicIPOnLaunch)}
			}
			return []string{strconv.Itoa(s.AvailableIPAddressCount)}
		},
		key:   func(s Subnet) string { return s.SubnetID },
		paged: true, lo: 5, hi: 1000,
		load: func(ctx context.Context, k *call, _ map[string][]string) ([]Subnet, error) {
			return c.defaultSubnets(ctx, k)
		},
	}
	subnets, next, err := d.run(ctx, k)
	if err != nil {
		return nil, err
	}
	return &DescribeSubnetsResponse{Subnets: subnets, NextToken: next}, nil
}

// AccountAttribute is one item of DescribeAccountAttributes.
type AccountAttribute struct {
	Name   string   `xml:"attributeName"`
	Values []string `xml:"attributeValueSet>item>attributeValue"`
}

// DescribeAccountAttributesResponse is DescribeAccountAttributes' answer.
type DescribeAccountAttributesResponse struct {
	ec2.ResponseMeta
	Attributes []AccountAttribute `xml:"accountAttributeSet>item"`
}

// describeAccountAttributesParams are the parameters DescribeAccountAttributes accepts.
var describeAccountAttributesParams = []string{
	"AttributeName.N",
}

func (c *Cloud) describeAccountAttributes(ctx context.Context, k *call) (any, error) {
	names, err := k.list("AttributeName")
	if err != nil {
		return nil, err
	}
	pool, err := c.publicPool(ctx, c.db)
	if err != nil {
		return nil, err
	}
	maxInst, err := maxInstances(ctx, c.db, k.account())
	if err != nil {
		return nil, err
	}
	all := []AccountAttribute{
		{Name: "supported-platforms", Values: []string{"VPC"}},
		{Name: "default-vpc", Values: []string{c.defaultVPCID()}},
		{Name: "max-instances", Values: []string{maxInst}},
		{Name: "vpc-max-security-groups-per-interface", Values: []string{"5"}},
		{Name: "max-elastic-ips", Values: []string{strconv.Itoa(pool.size())}},
		{Name: "vpc-max-elastic-ips", Values: []string{strconv.Itoa(pool.size())}},
	}
	resp := &DescribeAccountAttributesResponse{Attributes: []AccountAttribute{}}
	if len(names) == 0 {
		resp.Attributes = all
		return resp, nil
	}
	for _, n := range names {
		i := -1
		for j, a := range all {
			if a.Name == n {
				i = j
			}
		}
		if i < 0 {
			return nil, ec2.InvalidParameterValue("Value (%s) for parameter attributeName is invalid. Unknown attribute.", n)
		}
		resp.Attributes = append(resp.Attributes, all[i])
	}
	return resp, nil
}

// NetworkInterface is one item of DescribeNetworkInterfaces and of an
// instance's networkInterfaceSet.
type NetworkInterface struct {
	NetworkInterfaceID string              `xml:"networkInterfaceId"`
	SubnetID           string              `xml:"subnetId"`
	VpcID              string              `xml:"vpcId"`
	AvailabilityZone   string              `xml:"availabilityZone,omitempty"`
	Description        string              `xml:"description"`
	OwnerID            string              `xml:"ownerId"`
	RequesterManaged   bool                `xml:"requesterManaged"`
	Status             string              `xml:"status"`
	MACAddress         string              `xml:"macAddress"`
	PrivateIPAddress   string              `xml:"privateIpAddress"`
	PrivateDNSName     string              `xml:"privateDnsName,omitempty"`
	SourceDestCheck    bool                `xml:"sourceDestCheck"`
	InterfaceType      string              `xml:"interfaceType"`
	Groups             []GroupIdentifier   `xml:"groupSet>item"`
	Attachment         NetworkAttachment   `xml:"attachment"`
	Association        *NetworkAssociation `xml:"association,omitempty"`
	PrivateIPAddresses []NetworkPrivateIP  `xml:"privateIpAddressesSet>item"`
	TagSet             []Tag               `xml:"tagSet>item"`
	instanceID         string
}

// NetworkAttachment is an interface's attachment to its instance.
type NetworkAttachment struct {
	AttachmentID        string `xml:"attachmentId"`
	InstanceID          string `xml:"instanceId"`
	InstanceOwnerID     string `xml:"instanceOwnerId"`
	DeviceIndex         int    `xml:"deviceIndex"`
	Status              string `xml:"status"`
	DeleteOnTermination bool   `xml:"deleteOnTermination"`
}

// NetworkAssociation is an interface's public address.
type NetworkAssociation struct {
	PublicIP      string `xml:"publicIp"`
	PublicDNSName string `xml:"publicDnsName"`
	IPOwnerID     string `xml:"ipOwnerId"`
}

// NetworkPrivateIP is one private address of an interface.
type NetworkPrivateIP struct {
	PrivateIPAddress string              `xml:"privateIpAddress"`
	PrivateDNSName   string              `xml:"privateDnsName,omitempty"`
	Primary          bool                `xml:"primary"`
	Association      *NetworkAssociation `xml:"association,omitempty"`
}

// networkInterface is the one interface of an instance.
func (c *Cloud) networkInterface(in Instance) NetworkInterface {
	suffix := strings.TrimPrefix(in.InstanceID, "i-")
	ni := NetworkInterface{NetworkInterfaceID: networkInterfaceID(in.InstanceID), SubnetID: in.SubnetID, VpcID: in.VpcID,
		AvailabilityZone: in.Placement.AvailabilityZone, Description: "Primary network interface", OwnerID: in.ownerID,
		Status: "in-use", MACAddress: in.MACAddress, PrivateIPAddress: in.PrivateIPAddress, PrivateDNSName: in.PrivateDNSName,
		SourceDestCheck: true, InterfaceType: "interface", Groups: in.Groups,
		Attachment: NetworkAttachment{AttachmentID: "eni-attach-" + suffix, InstanceID: in.InstanceID, InstanceOwnerID: in.ownerID,
			Status: "attached", DeleteOnTermination: true},
		instanceID: in.InstanceID,
	}
	if in.IPAddress != "" {
		ni.Association = &NetworkAssociation{PublicIP: in.IPAddress, PublicDNSName: in.DNSName, IPOwnerID: in.ownerID}
	}
	ni.PrivateIPAddresses = []NetworkPrivateIP{{PrivateIPAddress: in.PrivateIPAddress, PrivateDNSName: in.PrivateDNSName,
		Primary: true, Association: ni.Association}}
	return ni
}

// DescribeNetworkInterfacesResponse is DescribeNetworkInterfaces' answer.
type DescribeNetworkInterfacesResponse struct {
	ec2.ResponseMeta
	Interfaces []NetworkInterface `xml:"networkInterfaceSet>item"`
	NextToken  string             `xml:"nextToken,omitempty"`
}

// describeNetworkInterfacesParams are the parameters DescribeNetworkInterfaces accepts.
var describeNetworkInterfacesParams = []string{
	"NetworkInterfaceId.N", "Filter.N.Name", "Filter.N.Value.N", "MaxResults", "NextToken",
}

func (c *Cloud) describeNetworkInterfaces(ctx context.Context, k *call) (any, error) {
	d := &describer[NetworkInterface]{
		ids: []idParam[NetworkInterface]{{name: "NetworkInterfaceId", of: func(n NetworkInterface) string { return n.NetworkInterfaceID },
			notFound: func(id string) error { return ec2.NotFound("InvalidNetworkInterfaceID.NotFound", id) }}},
		filters: []string{"network-interface-id", "attachment.instance-id", "attachment.attachment-id", "attachment.status",
			"attachment.device-index", "attachment.instance-owner-id", "instance-id", "group-id", "group-name", "subnet-id",
			"vpc-id", "availability-zone", "private-ip-address", "addresses.private-ip-address", "private-dns-name",
			"mac-address", "status", "description", "owner-id", "source-dest-check", "association.public-ip", "interface-type"},
		field: func(n NetworkInterface, name string) []string {
			switch name {
			case "network-interface-id":
				return []string{n.NetworkInterfaceID}
			case "attachment.instance-id", "instance-id":
				return []string{n.Attachment.InstanceID}
			case "attachment.attachment-id":
				return []string{n.Attachment.AttachmentID}
			case "attachment.status":
				return []string{n.Attachment.Status}
			case "attachment.device-index":
				return []string{strconv.Itoa(n.Attachment.DeviceIndex)}
			case "attachment.instance-owner-id", "owner-id":
				return []string{n.OwnerID}
			case "group-id", "group-name":
				var out []string
				for _, g := range n.Groups {
					if name == "group-id" {
						out = append(out, g.GroupID)
					} else {
						out = append(out, g.GroupName)
					}
				}
				return out
			case "subnet-id":
				return []string{n.SubnetID}
			case "vpc-id":
				return []string{n.VpcID}
			case "availability-zone":
				return []string{n.AvailabilityZone}
			case "private-ip-address", "addresses.private-ip-address":
				return []string{n.PrivateIPAddress}
			case "private-dns-name":
				return []string{n.PrivateDNSName}
			case "mac-address":
				return []string{n.MACAddress}
			case "status":
				return []string{n.Status}
			case "description":
				return []string{n.Description}
			case "source-dest-check":
				return []string{strconv.FormatBool(n.SourceDestCheck)}
			case "association.public-ip":
				if n.Association != nil {
					return []string{n.Association.PublicIP}
				}
				return nil
			}
			return []string{n.InterfaceType}
		},
		key:   func(n NetworkInterface) string { return n.NetworkInterfaceID },
		paged: true, lo: 5, hi: 1000,
		load: func(ctx context.Context, k *call, _ map[string][]string) ([]NetworkInterface, error) {
			ins, err := c.loadInstances(ctx, k, nil)
			if err != nil {
				return nil, err
			}
			var out []NetworkInterface
			for _, in := range ins {
				// A terminated instance's interface is gone with it.
				if in.State.Name != nodeapi.StateTerminated {
					out = append(out, c.networkInterface(in))
				}
			}
			return out, nil
		},
	}
	nis, next, err := d.run(ctx, k)
	if err != nil {
		return nil, err
	}
	return &DescribeNetworkInterfacesResponse{Interfaces: nis, NextToken: next}, nil
}
