package controller

import (
	"context"
	"fmt"
	"sort"

	"ironbark/controller/ec2"
	"ironbark/internal/nodeapi"
)

// Region is one item of DescribeRegions.
type Region struct {
	RegionName     string `xml:"regionName"`
	RegionEndpoint string `xml:"regionEndpoint"`
	OptInStatus    string `xml:"optInStatus"`
}

// DescribeRegionsResponse is DescribeRegions' answer.
type DescribeRegionsResponse struct {
	ec2.ResponseMeta
	Regions []Region `xml:"regionInfo>item"`
}

func (c *Cloud) describeRegions(ctx context.Context, k *call) (any, error) {
	fs, err := k.filters("region-name", "endpoint", "opt-in-status")
	if err != nil {
		return nil, err
	}
	r := Region{RegionName: c.cfg.Region, RegionEndpoint: c.cfg.Endpoint, OptInStatus: "opt-in-not-required"}
	regions, err := k.list("RegionName")
	if err != nil {
		return nil, err
	}
	want := wanted(regions)
	resp := &DescribeRegionsResponse{}
	for name := range want {
		if name != r.RegionName {
			return nil, ec2.Errorf("InvalidParameterValue", "Invalid region: %s", name)
		}
	}
	if matches(fs, nil, func(n string) []string {
		switch n {
		case "region-name":
			return []string{r.RegionName}
		case "endpoint":
			return []string{r.RegionEndpoint}
		}
		return []string{r.OptInStatus}
	}) {
		resp.Regions = append(resp.Regions, r)
	}
	return resp, nil
}

// ZoneMessage is one line of a zone's messageSet; Eucalyptus' verbose
// listing is made of them.
type ZoneMessage struct {
	Message string `xml:"message"`
}

// AvailabilityZone is one item of DescribeAvailabilityZones.
type AvailabilityZone struct {
	ZoneName   string        `xml:"zoneName"`
	ZoneState  string        `xml:"zoneState"`
	RegionName string        `xml:"regionName"`
	ZoneID     string        `xml:"zoneId"`
	ZoneType   string        `xml:"zoneType"`
	Messages   []ZoneMessage `xml:"messageSet>item"`
}

// DescribeAvailabilityZonesResponse is DescribeAvailabilityZones' answer.
type DescribeAvailabilityZonesResponse struct {
	ec2.ResponseMeta
	Zones []AvailabilityZone `xml:"availabilityZoneInfo>item"`
}

func (c *Cloud) describeAvailabilityZones(ctx context.Context, k *call) (any, error) {
	fs, err := k.filters("zone-name", "state", "region-name", "zone-id", "zone-type", "message")
	if err != nil {
		return nil, err
	}
	names, err := k.list("ZoneName")
	if err != nil {
		return nil, err
	}
	verbose := false
	for _, n := range names {
		if n == "verbose" {
			verbose = true
		}
	}
	var zones []Zone
	if c.placer != nil {
		if zones, err = c.placer.Zones(ctx); err != nil {
			return nil, fmt.Errorf("describe zones: %w", err)
		}
	}
	want := wanted(names)
	if verbose {
		want = nil
	}
	resp := &DescribeAvailabilityZonesResponse{Zones: []AvailabilityZone{}}
	for _, z := range zones {
		if want != nil && !want[z.Name] {
			continue
		}
		az := AvailabilityZone{ZoneName: z.Name, ZoneState: z.State, RegionName: c.cfg.Region,
			ZoneID: c.cfg.Region + "-" + z.Name, ZoneType: "availability-zone"}
		if az.ZoneState == "" {
			az.ZoneState = "available"
		}
		if !matches(fs, nil, az.field) {
			continue
		}
		if verbose {
			az.Messages = c.verboseZone(z)
		}
		resp.Zones = append(resp.Zones, az)
	}
	for name := range want {
		if !containsFunc(resp.Zones, func(a AvailabilityZone) bool { return a.ZoneName == name }) && len(fs) == 0 {
			return nil, ec2.Errorf("InvalidParameterValue", "The zone '%s' does not exist.", name)
		}
	}
	return resp, nil
}

// verboseZone lists free/max of each VM type the way euca-describe-availability-zones
// verbose prints it: "|- vm types     free / max   cpu   ram  disk".
func (c *Cloud) verboseZone(z Zone) []ZoneMessage {
	ms := []ZoneMessage{{Message: "|- vm types     free / max   cpu   ram  disk"}}
	for _, vt := range c.cfg.VMTypes {
		ms = append(ms, ZoneMessage{Message: fmt.Sprintf("|- %-12s %04d / %04d  %3d  %5d  %4d",
			vt.Name, z.Free[vt.Name], z.Max[vt.Name], vt.Cores, vt.MemoryMiB, vt.DiskGiB)})
	}
	return ms
}

func (a AvailabilityZone) field(n string) []string {
	switch n {
	case "zone-name":
		return []string{a.ZoneName}
	case "state":
		return []string{a.ZoneState}
	case "region-name":
		return []string{a.RegionName}
	case "zone-id":
		return []string{a.ZoneID}
	case "zone-type":
		return []string{a.ZoneType}
	}
	var out []string
	for _, m := range a.Messages {
		out = append(out, m.Message)
	}
	return out
}

// InstanceTypeInfo is one item of DescribeInstanceTypes.
type InstanceTypeInfo struct {
	InstanceType       string   `xml:"instanceType"`
	CurrentGeneration  bool     `xml:"currentGeneration"`
	FreeTierEligible   bool     `xml:"freeTierEligible"`
	SupportedUsage     []string `xml:"supportedUsageClasses>item"`
	RootDeviceTypes    []string `xml:"supportedRootDeviceTypes>item"`
	Virtualization     []string `xml:"supportedVirtualizationTypes>item"`
	BareMetal          bool     `xml:"bareMetal"`
	Hypervisor         string   `xml:"hypervisor"`
	Architectures      []string `xml:"processorInfo>supportedArchitectures>item"`
	DefaultVCpus       int      `xml:"vCpuInfo>defaultVCpus"`
	DefaultCores       int      `xml:"vCpuInfo>defaultCores"`
	ThreadsPerCore     int      `xml:"vCpuInfo>defaultThreadsPerCore"`
	MemoryMiB          int      `xml:"memoryInfo>sizeInMiB"`
	InstanceStorage    bool     `xml:"instanceStorageSupported"`
	StorageTotalGB     int      `xml:"instanceStorageInfo>totalSizeInGB"`
	StorageDisks       []disk   `xml:"instanceStorageInfo>disks>item"`
	AutoRecovery       bool     `xml:"autoRecoverySupported"`
	HibernationSupport bool     `xml:"hibernationSupported"`
}

type disk struct {
	SizeInGB int    `xml:"sizeInGB"`
	Count    int    `xml:"count"`
	Type     string `xml:"type"`
}

// DescribeInstanceTypesResponse is DescribeInstanceTypes' answer.
type DescribeInstanceTypesResponse struct {
	ec2.ResponseMeta
	InstanceTypes []InstanceTypeInfo `xml:"instanceTypeSet>item"`
	NextToken     string             `xml:"nextToken,omitempty"`
}

func (c *Cloud) describeInstanceTypes(ctx context.Context, k *call) (any, error) {
	fs, err := k.filters("instance-type", "vcpu-info.default-vcpus", "memory-info.size-in-mib",
		"instance-storage-info.total-size-in-gb", "current-generation")
	if err != nil {
		return nil, err
	}
	p, err := k.page(5, 100)
	if err != nil {
		return nil, err
	}
	types, err := k.list("InstanceType")
	if err != nil {
		return nil, err
	}
	want := wanted(types)
	for name := range want {
		if _, ok := c.vmTypes[name]; !ok {
			return nil, ec2.Errorf("InvalidInstanceType", "The following supplied instance types do not exist: [%s]", name)
		}
	}
	var out []InstanceTypeInfo
	for _, vt := range c.cfg.VMTypes {
		if want != nil && !want[vt.Name] {
			continue
		}
		it := instanceTypeInfo(vt)
		if matches(fs, nil, func(n string) []string {
			switch n {
			case "instance-type":
				return []string{vt.Name}
			case "vcpu-info.default-vcpus":
				return []string{fmt.Sprint(vt.Cores)}
			case "memory-info.size-in-mib":
				return []string{fmt.Sprint(vt.MemoryMiB)}
			case "instance-storage-info.total-size-in-gb":
				return []string{fmt.Sprint(vt.DiskGiB)}
			}
			return []string{"true"}
		}) {
			out = append(out, it)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].InstanceType < out[j].InstanceType })
	page, next := ec2.Paginate(out, func(i InstanceTypeInfo) string { return i.InstanceType }, p)
	return &DescribeInstanceTypesResponse{InstanceTypes: page, NextToken: next}, nil
}

func instanceTypeInfo(vt nodeapi.VMType) InstanceTypeInfo {
	return InstanceTypeInfo{
		InstanceType: vt.Name, CurrentGeneration: true, SupportedUsage: []string{"on-demand"},
		RootDeviceTypes: []string{"instance-store"}, Virtualization: []string{"hvm"}, Hypervisor: "xen",
		Architectures: []string{"x86_64"}, DefaultVCpus: vt.Cores, DefaultCores: vt.Cores, ThreadsPerCore: 1,
		MemoryMiB: vt.MemoryMiB, InstanceStorage: true, StorageTotalGB: vt.DiskGiB,
		StorageDisks: []disk{{SizeInGB: vt.DiskGiB, Count: 1, Type: "hdd"}},
	}
}
