// Package nodeapi holds the types of the controller's internal API, the one
// node agents speak over mTLS. It is versioned by URL prefix (/v1/...) and
// documented in docs/node-api.md. Both ends import these types; neither
// end's logic lives here.
package nodeapi

// VMType is an instance size, as in Eucalyptus' configurable VM types.
type VMType struct {
	Name      string `json:"name"` // m1.small, c1.medium, ...
	Cores     int    `json:"cores"`
	MemoryMiB int    `json:"memoryMiB"`
	DiskGiB   int    `json:"diskGiB"`
}

// Capacity is what a node has, reported on enrollment and every heartbeat.
type Capacity struct {
	Cores     int `json:"cores"`
	MemoryMiB int `json:"memoryMiB"`
	DiskGiB   int `json:"diskGiB"`
}

// NodeUsage is what a node's instances use: the controller's ledger sums
// it from its instance records, and placement subtracts it from Capacity.
type NodeUsage struct {
	Cores     int
	MemoryMiB int
	DiskGiB   int
	Instances int
}

// Instance states, the EC2 names.
const (
	StatePending      = "pending"
	StateRunning      = "running"
	StateStopping     = "stopping"
	StateStopped      = "stopped"
	StateShuttingDown = "shutting-down"
	StateTerminated   = "terminated"
)

// Artifact names an image blob the node fetches by digest.
type Artifact struct {
	ID     string `json:"id"`     // emi-/eki-/eri-...
	Digest string `json:"digest"` // sha256:<hex>
	Size   int64  `json:"size"`
	URL    string `json:"url"`    // where the node downloads it (Range supported)
	Format string `json:"format"` // raw | qcow2
}

// InstanceSpec is the desired state of one instance on a node.
type InstanceSpec struct {
	InstanceID   string    `json:"instanceId"`
	AccountID    string    `json:"accountId"`
	VMType       VMType    `json:"vmType"`
	Image        Artifact  `json:"image"`
	Kernel       *Artifact `json:"kernel,omitempty"`
	Ramdisk      *Artifact `json:"ramdisk,omitempty"`
	MAC          string    `json:"mac"`
	PrivateIP    string    `json:"privateIp,omitempty"`
	KeyName      string    `json:"keyName,omitempty"`
	PublicKey    string    `json:"publicKey,omitempty"`
	UserData     []byte    `json:"userData,omitempty"`
	Desired      string    `json:"desired"`      // running | stopped | terminated
	RebootSerial int       `json:"rebootSerial"` // bumped by RebootInstances
	// Network is the instance's networking (network.go).
	Network *InstanceNetwork `json:"network,omitempty"`
	// SecurityGroups are the IDs of the instance's groups (secgroups.go).
	SecurityGroups []string `json:"securityGroups,omitempty"`
	// Version names the spec (SpecVersion of it), set by a controller
	// that knows versions (specs.go); "" from one that does not.
	Version string `json:"version,omitempty"`
}

// InstanceStatus is what a node observes of one instance.
type InstanceStatus struct {
	InstanceID string `json:"instanceId"`
	State      string `json:"state"`
	Reason     string `json:"reason,omitempty"` // why it failed or stopped
	// ConsoleTail is the last 64 KiB of the serial console, sent when it
	// changed since the last report.
	ConsoleTail  []byte `json:"consoleTail,omitempty"`
	RebootSerial int    `json:"rebootSerial"`
}

// Version is the API version, the first path element of every call.
const Version = "v1"

// Paths of the v1 API, relative to the controller's node URL.
const (
	PathEnroll    = "/v1/enroll"    // POST EnrollRequest -> EnrollResponse; no client cert
	PathHeartbeat = "/v1/heartbeat" // POST HeartbeatRequest -> HeartbeatResponse
	PathInstances = "/v1/instances" // GET ?etag=E&wait=SECONDS&members=G:V,...&specs=I:V,...&stream=1 -> Desired (long poll; a line each, streamed)
	PathBlobs     = "/v1/blobs/"    // GET /v1/blobs/sha256/<hex>, Range supported (image store)
)

// StreamContentType is a streamed PathInstances answer's: one Desired per
// line.
const StreamContentType = "application/x-ndjson"

// EnrollRequest trades a one-time token for a node certificate.
type EnrollRequest struct {
	Token    string   `json:"token"`
	Hostname string   `json:"hostname"`
	CSR      string   `json:"csr"` // PEM CERTIFICATE REQUEST; the key stays on the node
	Capacity Capacity `json:"capacity"`
	// MACs are the node's Ethernet addresses: a token bound to a host
	// (issued by the PXE installer) enrolls only a node that has its MAC.
	MACs []string `json:"macs,omitempty"`
}

// EnrollResponse carries the node's identity and certificate.
type EnrollResponse struct {
	NodeID      string `json:"nodeId"`
	Cluster     string `json:"cluster"`
	Certificate string `json:"certificate"` // PEM, CN = NodeID
	CA          string `json:"ca"`          // PEM of the cloud's CA
}

// HeartbeatRequest is what a node reports periodically and whenever an
// instance changes state.
type HeartbeatRequest struct {
	Hostname   string           `json:"hostname"`
	Capacity   Capacity         `json:"capacity"`
	Hypervisor string           `json:"hypervisor,omitempty"` // libvirt URI
	Instances  []InstanceStatus `json:"instances"`
	// Full is true when Instances lists every instance the node holds
	// (always, in v1).
	Full bool `json:"full"`
}

// HeartbeatResponse acknowledges a heartbeat.
type HeartbeatResponse struct {
	NodeID  string `json:"nodeId"`
	Cluster string `json:"cluster"`
	// IntervalSeconds is how often the controller wants heartbeats.
	IntervalSeconds int `json:"intervalSeconds"`
}

// Desired is the set of instances the controller wants on a node. ETag
// changes whenever the set does; a GET with the current ETag waits (up to
// wait seconds) for a change. The ETag names the state, not the answer:
// it covers member lists and instance specs by their versions, so it is
// the same whether they came whole, as a delta or kept, and on every
// controller.
type Desired struct {
	ETag      string         `json:"etag"`
	Instances []InstanceSpec `json:"instances"`
	// Kept are instances of the desired set that are not in Instances:
	// the node holds their specs at the version it sent (specs.go).
	Kept []string `json:"kept,omitempty"`
	// SecurityGroups are the groups the instances are in and the peers
	// their rules name (secgroups.go).
	SecurityGroups []SecurityGroup `json:"securityGroups,omitempty"`
}

// Error is the body of every non-2xx answer.
type Error struct {
	Error string `json:"error"`
}
