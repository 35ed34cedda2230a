package controller

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

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

// describeRegionsParams are the parameters DescribeRegions accepts.
var describeRegionsParams = []string{
	"RegionName.N", "Filter.N.Name", "Filter.N.Value.N", "AllRegions",
}

func (c *Cloud) describeRegions(ctx context.Context, k *call) (any, error) {
	d := &describer[Region]{
		ids: []idParam[Region]{{name: "RegionName", of: func(r Region) string { return r.RegionName },
			notFound: func(name string) error { return ec2.InvalidParameterValue("Invalid region: %s", name) }}},
		filters: []string{"region-name", "endpoint", "opt-in-status"},
		field: func(r Region, n string) []string {
			switch n {
			case "region-name":
				return []string{r.RegionName}
			case "endpoint":
				return []string{r.RegionEndpoint}
			}
			return []string{r.OptInStatus}
		},
		key: func(r Region) string { return r.RegionName },
		load: func(context.Context, *call, map[string][]string) ([]Region, error) {
			return []Region{{RegionName: c.cfg.Region, RegionEndpoint: c.cfg.Endpoint, OptInStatus: "opt-in-not-required"}}, nil
		},
	}
	regions, _, err := d.run(ctx, k)
	if err != nil {
		return nil, err
	}
	return &DescribeRegionsResponse{Regions: regions}, nil
}

// AvailabilityZone is one item of DescribeAvailabilityZones. Eucalyptus'
// verbose listing adds items of its own after each zone (see verboseZone).
type AvailabilityZone struct {
	ZoneName   string `xml:"zoneName"`
	ZoneState  string `xml:"zoneState"`
	RegionName string `xml:"regionName,omitempty"`
	ZoneID     string `xml:"zoneId,omitempty"`
	ZoneType   string `xml:"zoneType,omitempty"`
}

// DescribeAvailabilityZonesResponse is DescribeAvailabilityZones' answer.
type DescribeAvailabilityZonesResponse struct {
	ec2.ResponseMeta
	Zones []AvailabilityZone `xml:"availabilityZoneInfo>item"`
}

// describeAvailabilityZonesParams are the parameters DescribeAvailabilityZones accepts.
var describeAvailabilityZonesParams = []string{
	"ZoneName.N", "ZoneId.N", "Filter.N.Name", "Filter.N.Value.N", "AllAvailabilityZones",
}

func (c *Cloud) describeAvailabilityZones(ctx context.Context, k *call) (any, error) {
	// "verbose" among the zone names asks for Eucalyptus' listing of every
	// zone with its capacity; it is no zone name of its own.
	names, err := k.list("ZoneName")
	if err != nil {
		return nil, err
	}
	verbose := slices.Contains(names, "verbose")
	var zones []Zone
	if c.placer != nil {
		if zones, err = c.placer.Zones(ctx); err != nil {
			return nil, fmt.Errorf("describe zones: %w", err)
		}
	}
	byName := map[string]Zone{}
	for _, z := range zones {
		byName[z.Name] = z
	}
	d := &describer[AvailabilityZone]{
		filters: []string{"zone-name", "state", "region-name", "zone-id", "zone-type", "message"},
		field:   func(a AvailabilityZone, n string) []string { return a.field(n) },
		key:     func(a AvailabilityZone) string { return a.ZoneName },
		load: func(context.Context, *call, map[string][]string) ([]AvailabilityZone, error) {
			out := make([]AvailabilityZone, 0, len(zones))
			for _, z := range zones {
				az := AvailabilityZone{ZoneName: z.Name, ZoneState: z.State, RegionName: c.cfg.Region,
					ZoneID: c.cfg.Region + "-" + z.Name, ZoneType: "availability-zone"}
				if az.ZoneState == "" {
					az.ZoneState = "available"
				}
				out = append(out, az)
			}
			return out, nil
		},
	}
	if !verbose {
		d.ids = []idParam[AvailabilityZone]{{name: "ZoneName", of: func(a AvailabilityZone) string { return a.ZoneName },
			notFound: func(name string) error {
				return ec2.InvalidParameterValue("The zone '%s' does not exist.", name)
			}}}
	}
	azs, _, err := d.run(ctx, k)
	if err != nil {
		return nil, err
	}
	resp := &DescribeAvailabilityZonesResponse{Zones: []AvailabilityZone{}}
	for _, az := range azs {
		resp.Zones = append(resp.Zones, az)
		if verbose {
			resp.Zones = append(resp.Zones, c.verboseZone(byName[az.ZoneName])...)
		}
	}
	return resp, nil
}

// verboseZone is what Eucalyptus answers after a zone for "verbose": a
// header item, then one item per VM type with free / max, cpu, ram (MiB)
// and disk (GiB) in zoneState, in the columns Eucalyptus' CLI and
// console parse.
func (c *Cloud) verboseZone(z Zone) []AvailabilityZone {
	out := []AvailabilityZone{{ZoneName: "|- vm types", ZoneState: "free / max   cpu   ram  disk"}}
	for _, vt := range c.cfg.VMTypes {
		out = append(out, AvailabilityZone{ZoneName: "|- " + vt.Name,
			ZoneState: fmt.Sprintf("%04d / %04d %3d %6d %5d", z.Free[vt.Name], z.Max[vt.Name], vt.Cores, vt.MemoryMiB, vt.DiskGiB)})
	}
	return out
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
	return nil // message: ironbark's zones carry none
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

// DescribeInstanceTypesResponse is DescribeInstanceTypes' answer in AWS's
// shape.
type DescribeInstanceTypesResponse struct {
	ec2.ResponseMeta
	InstanceTypes []InstanceTypeInfo `xml:"instanceTypeSet>item"`
	NextToken     string             `xml:"nextToken,omitempty"`
}

// EucalyptusInstanceType is one item of Eucalyptus' DescribeInstanceTypes.
type EucalyptusInstanceType struct {
	Name   string `xml:"name"`
	CPU    int    `xml:"cpu"`
	Memory int    `xml:"memory"` // MiB
	Disk   int    `xml:"disk"`   // GiB
}

// EucalyptusInstanceTypesResponse is DescribeInstanceTypes' answer in
// Eucalyptus' shape, for Eucalyptus' clients.
type EucalyptusInstanceTypesResponse struct {
	ec2.ResponseMeta
	InstanceTypes []EucalyptusInstanceType `xml:"instanceTypeDetails>item"`
}

// eucalyptusClient reports whether a call comes from a Eucalyptus-era
// client: to Eucalyptus' own path, or in an API version up to
// 2015-10-01 (euca2ools 3.4's), older than AWS's DescribeInstanceTypes.
func eucalyptusClient(k *call) bool {
	return strings.TrimSuffix(k.Path, "/") == "/services/Eucalyptus" || (k.Version != "" && k.Version <= "2015-10-01")
}

// describeInstanceTypesParams are the parameters DescribeInstanceTypes accepts.
var describeInstanceTypesParams = []string{
	"InstanceType.N", "Filter.N.Name", "Filter.N.Value.N", "MaxResults", "NextToken",
}

func (c *Cloud) describeInstanceTypes(ctx context.Context, k *call) (any, error) {
	euca := eucalyptusClient(k)
	d := &describer[nodeapi.VMType]{
		ids: []idParam[nodeapi.VMType]{{name: "InstanceType", of: func(vt nodeapi.VMType) string { return vt.Name },
			notFound: func(name string) error {
				return ec2.Errorf("InvalidInstanceType", "The following supplied instance types do not exist: [%s]", name)
			}}},
		filters: []string{"instance-type", "vcpu-info.default-vcpus", "memory-info.size-in-mib",
			"instance-storage-info.total-size-in-gb", "current-generation"},
		field: func(vt nodeapi.VMType, n string) []string {
			switch n {
			case "instance-type":
				return []string{vt.Name}
			case "vcpu-info.default-vcpus":
				return []string{strconv.Itoa(vt.Cores)}
			case "memory-info.size-in-mib":
				return []string{strconv.Itoa(vt.MemoryMiB)}
			case "instance-storage-info.total-size-in-gb":
				return []string{strconv.Itoa(vt.DiskGiB)}
			}
			return []string{"true"}
		},
		key:   func(vt nodeapi.VMType) string { return vt.Name },
		paged: !euca, lo: 5, hi: 100,
		load: func(context.Context, *call, map[string][]string) ([]nodeapi.VMType, error) {
			return c.cfg.VMTypes, nil
		},
	}
	vts, next, err := d.run(ctx, k)
	if err != nil {
		return nil, err
	}
	if euca {
		// Eucalyptus lists its types in its own order (the configured one).
		resp := &EucalyptusInstanceTypesResponse{InstanceTypes: []EucalyptusInstanceType{}}
		for _, vt := range c.cfg.VMTypes {
			if slices.ContainsFunc(vts, func(v nodeapi.VMType) bool { return v.Name == vt.Name }) {
				resp.InstanceTypes = append(resp.InstanceTypes, EucalyptusInstanceType{Name: vt.Name, CPU: vt.Cores, Memory: vt.MemoryMiB, Disk: vt.DiskGiB})
			}
		}
		return resp, nil
	}
	resp := &DescribeInstanceTypesResponse{NextToken: next}
	for _, vt := range vts {
		resp.InstanceTypes = append(resp.InstanceTypes, instanceTypeInfo(vt))
	}
	return resp, nil
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
