package nodeagent

import (
	"encoding/xml"
	"fmt"
	"strings"

	"libvirt.org/go/libvirtxml"

	"ironbark/internal/nodeapi"
)

// MetadataNS is the XML namespace of the agent's tag in a domain's
// metadata; a domain without it is not ours and is never touched.
const MetadataNS = "https://ironbark.dev/xmlns/node/1"

const metadataPrefix = "ironbark"

// instanceTag is what a domain's metadata says about its instance.
type instanceTag struct {
	XMLName xml.Name `xml:"instance"`
	ID      string   `xml:"id,attr"`
	// Node is the enrolled node that owns the domain: several agents may
	// share one libvirtd (tests do), and each touches only its own.
	Node         string `xml:"node,attr"`
	Account      string `xml:"account,attr"`
	VMType       string `xml:"vmType,attr"`
	RebootSerial int    `xml:"rebootSerial,attr"`
}

// tagXML is the metadata element libvirt stores, prefixed as libvirt wants.
func (t instanceTag) tagXML() string {
	type out struct {
		XMLName      xml.Name `xml:"ironbark:instance"`
		NS           string   `xml:"xmlns:ironbark,attr"`
		ID           string   `xml:"id,attr"`
		Node         string   `xml:"node,attr"`
		Account      string   `xml:"account,attr"`
		VMType       string   `xml:"vmType,attr"`
		RebootSerial int      `xml:"rebootSerial,attr"`
	}
	b, _ := xml.Marshal(out{NS: MetadataNS, ID: t.ID, Node: t.Node, Account: t.Account, VMType: t.VMType, RebootSerial: t.RebootSerial})
	return string(b)
}

// plainXML is the element without prefix, as SetMetadata takes it (libvirt
// adds the namespace from its arguments).
func (t instanceTag) plainXML() string {
	b, _ := xml.Marshal(t)
	return string(b)
}

func parseTag(s string) (instanceTag, error) {
	var t instanceTag
	if err := xml.Unmarshal([]byte(s), &t); err != nil {
		return t, fmt.Errorf("instance tag: %w", err)
	}
	if t.ID == "" {
		return t, fmt.Errorf("instance tag without id")
	}
	return t, nil
}

// domainPlan is everything the domain XML is made from.
type domainPlan struct {
	Type      string // libvirt domain type: qemu, kvm, xen, test
	Node      string // the owning node's ID
	Spec      nodeapi.InstanceSpec
	Root      string // qcow2 overlay (Xen: a raw file)
	Ephemeral string // qcow2 (Xen: a raw file), "" for none
	Kernel    string // "" boots the root disk
	Initrd    string
	Console   string // serial console log file (Xen: xenconsoled writes its own)
	Bridge    string // "" for no NIC
}

// DomainXML builds the libvirt domain for an instance.
func (p domainPlan) DomainXML() (string, error) {
	s := p.Spec
	if s.VMType.MemoryMiB <= 0 || s.VMType.Cores <= 0 {
		return "", fmt.Errorf("vm type %q: cores and memory must be positive", s.VMType.Name)
	}
	xen := p.Type == "xen"
	pv := xen && p.Kernel != ""
	d := &libvirtxml.Domain{
		Type:     p.Type,
		Name:     s.InstanceID,
		Metadata: &libvirtxml.DomainMetadata{XML: instanceTag{ID: s.InstanceID, Node: p.Node, Account: s.AccountID, VMType: s.VMType.Name, RebootSerial: s.RebootSerial}.tagXML()},
		Memory:   &libvirtxml.DomainMemory{Value: uint(s.VMType.MemoryMiB), Unit: "MiB"},
		VCPU:     &libvirtxml.DomainVCPU{Value: uint(s.VMType.Cores)},
		OS:       &libvirtxml.DomainOS{Type: &libvirtxml.DomainOSType{Arch: "x86_64", Type: "hvm"}},
		Features: &libvirtxml.DomainFeatureList{ACPI: &libvirtxml.DomainFeature{}, APIC: &libvirtxml.DomainFeatureAPIC{}},
		// A guest that powers off stays defined (stopped); the agent
		// decides what that means.
		OnPoweroff: "destroy",
		OnReboot:   "restart",
		OnCrash:    "destroy",
		Devices:    &libvirtxml.DomainDeviceList{},
	}
	if pv {
		d.OS.Type = &libvirtxml.DomainOSType{Type: "linux"}
		d.Features = nil
	}
	if p.Type == "test" {
		d.OS.Type.Arch = "i686"
	}
	bus, dev := "virtio", "vd"
	if xen {
		bus, dev = "xen", "xvd"
	}
	root := "/dev/" + dev + "a"
	if p.Kernel != "" {
		d.OS.Kernel, d.OS.Initrd = p.Kernel, p.Initrd
		console := "ttyS0"
		if pv {
			console = "hvc0"
		}
		d.OS.Cmdline = strings.Join([]string{"console=" + console, "root=" + root, "ro"}, " ")
	} else if !pv {
		d.OS.BootDevices = []libvirtxml.DomainBootDevice{{Dev: "hd"}}
	}
	// Xen's disks are raw files behind the kernel's block backend (a
	// loop device made by the block hotplug script): a qcow2 disk would
	// need a qemu device model per guest in dom0.
	driver := &libvirtxml.DomainDiskDriver{Name: "qemu", Type: "qcow2"}
	if xen {
		driver = &libvirtxml.DomainDiskDriver{Type: "raw"}
	}
	disk := func(path, target string) libvirtxml.DomainDisk {
		return libvirtxml.DomainDisk{
			Device: "disk",
			Driver: driver,
			Source: &libvirtxml.DomainDiskSource{File: &libvirtxml.DomainDiskSourceFile{File: path}},
			Target: &libvirtxml.DomainDiskTarget{Dev: target, Bus: bus},
		}
	}
	d.Devices.Disks = append(d.Devices.Disks, disk(p.Root, dev+"a"))
	if p.Ephemeral != "" {
		d.Devices.Disks = append(d.Devices.Disks, disk(p.Ephemeral, dev+"b"))
	}
	if p.Bridge != "" {
		nic := libvirtxml.DomainInterface{
			MAC:    &libvirtxml.DomainInterfaceMAC{Address: s.MAC},
			Source: &libvirtxml.DomainInterfaceSource{Bridge: &libvirtxml.DomainInterfaceSourceBridge{Bridge: p.Bridge}},
			// A name the agent knows, so its bridge filter can tie the
			// port to the instance's MAC and address.
			Target: &libvirtxml.DomainInterfaceTarget{Dev: TapName(s.InstanceID)},
		}
		if !xen {
			nic.Model = &libvirtxml.DomainInterfaceModel{Type: "virtio"}
		}
		d.Devices.Interfaces = append(d.Devices.Interfaces, nic)
	}
	zero := uint(0)
	src := &libvirtxml.DomainChardevSource{File: &libvirtxml.DomainChardevSourceFile{Path: p.Console, Append: "on"}}
	if xen {
		// libxl gives a guest's console only as a pty; xenconsoled
		// (--log=guest) keeps what it prints in a file the agent reads.
		d.Devices.Consoles = []libvirtxml.DomainConsole{{Source: &libvirtxml.DomainChardevSource{Pty: &libvirtxml.DomainChardevSourcePty{}},
			Target: &libvirtxml.DomainConsoleTarget{Type: "xen", Port: &zero}}}
	} else if p.Type != "test" {
		d.Devices.Serials = []libvirtxml.DomainSerial{{Source: src, Target: &libvirtxml.DomainSerialTarget{Port: &zero}}}
	}
	return d.Marshal()
}

// domainType maps a libvirt URI and the --domain-type flag (qemu or kvm,
// for qemu:// URIs) to the domain type.
func domainType(uri, qemuType string) (string, error) {
	// The driver is the scheme before any "+transport" (qemu+ssh://...).
	scheme, _, _ := strings.Cut(uri, ":")
	scheme, _, _ = strings.Cut(scheme, "+")
	switch scheme {
	case "test":
		return "test", nil
	case "xen":
		return "xen", nil
	case "qemu":
		if qemuType != "qemu" && qemuType != "kvm" {
			return "", fmt.Errorf("domain type %q: want qemu (TCG) or kvm", qemuType)
		}
		return qemuType, nil
	}
	return "", fmt.Errorf("libvirt URI %q: ironbark-node supports qemu://, xen:// and test://", uri)
}
