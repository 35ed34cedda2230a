package controller

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"time"

	"ironbark/controller/ec2"
	"ironbark/internal/nodeapi"
	"ironbark/internal/store"
)

// GCPercent is the garbage collector's GOGC that `ironbark controller`
// sets (debug.SetGCPercent) unless GOGC is in its environment. At 10,000
// nodes and 100,000 instances the live heap is about 600 MB (the nodes'
// connections, the member lists, the answers kept) and the heartbeats
// and answers allocate about 80 MB a second: at Go's default of 100 a
// collection began every 6 s and marked for about 1 s, and on a busy
// machine the goroutines it drafted into marking (assists) stalled
// launches under the placement lock for hundreds of milliseconds. At 200
// the heap may grow to three times what is live.
const GCPercent = 200

// Config is what a Cloud needs besides its collaborators.
type Config struct {
	Region   string // default "ironbark"
	Endpoint string // the EC2 URL DescribeRegions shows
	// VMTypes are the instance sizes offered, in display order;
	// DefaultVMTypes when empty.
	VMTypes []nodeapi.VMType
	// PublicAddresses is the pool AllocateAddress draws from: CIDRs
	// ("198.51.100.0/28") or ranges ("198.51.100.10-198.51.100.20").
	PublicAddresses []string
	// InstanceSubnet is the IPv4 subnet instances get their private
	// address from (the nodes' bridge subnet), DefaultInstanceSubnet when
	// empty; addresses are handed out from its .10 upward.
	InstanceSubnet string
	// ClusterSubnets gives zones their own instance subnet (controller.json's
	// clusterSubnets) where the cluster record names none.
	ClusterSubnets map[string]string
	// ArtifactURL says where nodes download a blob by digest (the image
	// store's HTTP server); nil leaves Artifact.URL empty.
	ArtifactURL func(digest string) string
	// TerminatedTTL is how long terminated instances stay visible
	// (EC2: about an hour).
	TerminatedTTL time.Duration
	// LostAfter is how long a node is silent before terminations on it
	// complete without it (failure.go); 0 means DefaultLostAfter.
	LostAfter time.Duration
	// Notify, when set, is told the node of every instance whose desired
	// state changed, so the cluster side can wake that node's agent.
	Notify func(nodeID string)
	// NotifyInTx, when set, is told the nodes of a launch, stop, start,
	// termination or reboot inside its transaction instead of Notify
	// after it: their agents are woken when it commits, on every
	// controller, even if this one dies before it could tell them.
	NotifyInTx func(ctx context.Context, tx *store.Tx, nodeIDs ...string) error
	// NotifySoon, when set, is told the nodes whose desired state changed
	// in a way that may wait a moment and comes in bursts (the member
	// lists of security groups a launch grows), so the cluster side can
	// wake them together, shortly; nil: Notify is told. Unused when
	// NotifyGroupsInTx is set.
	NotifySoon func(nodeID string)
	// NotifyGroupsInTx, when set, is told inside its transaction of a
	// change of security groups (members: a launch or termination changed
	// their member lists; else a rule change) instead of NotifySoon and
	// Notify after it: every controller wakes the nodes that enforce them
	// when it commits (cluster.Service.NotifyGroupsInTx).
	NotifyGroupsInTx func(ctx context.Context, tx *store.Tx, groups []string, members bool) error
	// Jobs says whether this controller runs the periodic jobs (purge,
	// failure checks) now: with several controllers on one database, one
	// at a time does (store.Leader). nil: this one always does.
	Jobs Leadership
	// DataDir, when set, is the frontend's data dir: IAM's DeleteUser and
	// DeleteAccessKey remove the credentials files kept there.
	DataDir string
	// BlobSize, when set, checks that RegisterImage's sha256: location is in
	// the image store and gives its size.
	BlobSize func(ctx context.Context, digest string) (int64, error)
}

// Cloud is the EC2 side of the controller: it implements ec2.Handler and
// ec2.CredentialStore for the wire layer and InstanceLedger for the
// cluster side, over the store.
type Cloud struct {
	db      *store.DB
	placer  Placer
	log     *slog.Logger
	cfg     Config
	vmTypes map[string]nodeapi.VMType
	pool    *addressPool
	// subnet and privatePool are where private addresses come from.
	subnet      netip.Prefix
	privatePool *addressPool
	now         func() time.Time
	actions     map[string]actionSpec
	stsActions  map[string]actionSpec
	iamActions  map[string]actionSpec
	launchQ     launchQueue // this controller's launches (launchqueue.go)
	warmMu      sync.Mutex  // one warmPlacement at a time (warm.go)
	secrets     secretCache // unsealed secrets (accesskeys.go)
	keyUse      keyUse      // when keys last signed (accesskeys.go)
	health      NodeHealth  // which nodes are up (failure.go); nil: all
	memberLog   memberLog   // security group membership, kept from the store's log (memberlog.go)
	groupLists  groupLists  // parsed reservation groups (members.go)
	// parsedArtifacts are parsed instance artifacts (ledger.go).
	parsedArtifacts parsedArtifacts
	takenIPs        takenIPs // private addresses held, for launches (privateips.go)
	usageCache      usageCache
	ledgerReads     *ledgerReads // heartbeats' reads of their nodes' instances (ledgerreads.go)
	// noUsage skips the usage record on launch: only benchmarks set it,
	// to measure what the record costs.
	noUsage bool
}

// action runs one EC2 action for an authenticated caller.
type action func(ctx context.Context, c *call) (any, error)

// New makes a Cloud over a migrated store (see Migrations). placer may be
// nil: RunInstances then answers InsufficientInstanceCapacity.
func New(cfg Config, db *store.DB, placer Placer, log *slog.Logger) (*Cloud, error) {
	d := Settings{Region: cfg.Region, VMTypes: cfg.VMTypes}.Resolved()
	cfg.Region, cfg.VMTypes = d.Region, d.VMTypes
	if !validRegionName(cfg.Region) {
		return nil, fmt.Errorf("region %q: want 1 to 64 letters, digits, '-', '_' or '.'", cfg.Region)
	}
	if cfg.LostAfter <= 0 {
		cfg.LostAfter = DefaultLostAfter
	}
	if cfg.TerminatedTTL == 0 {
		cfg.TerminatedTTL = time.Hour
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	pool, err := parseAddressPool(cfg.PublicAddresses)
	if err != nil {
		return nil, err
	}
	if cfg.InstanceSubnet == "" {
		cfg.InstanceSubnet = DefaultInstanceSubnet
	}
	subnet, privatePool, err := parseInstanceSubnet(cfg.InstanceSubnet)
	if err != nil {
		return nil, err
	}
	if err := CheckSubnets(Settings{InstanceSubnet: subnet.String(), ClusterSubnets: cfg.ClusterSubnets}.ReservedSubnets()); err != nil {
		return nil, err
	}
	c := &Cloud{db: db, placer: placer, log: log, cfg: cfg, pool: pool, now: time.Now,
		subnet: subnet, privatePool: privatePool, vmTypes: make(map[string]nodeapi.VMType)}
	for _, vt := range cfg.VMTypes {
		c.vmTypes[vt.Name] = vt
	}
	c.ledgerReads = newLedgerReads(c)
	c.actions = c.actionTable()
	c.stsActions = c.stsActionTable()
	c.iamActions = c.iamActionTable()
	return c, nil
}

// SetPlacer sets the cluster side after construction: the cluster side
// needs the Cloud as its InstanceLedger first. Call it before serving.
func (c *Cloud) SetPlacer(p Placer) { c.placer = p }

// notify tells the cluster side that these nodes have work.
func (c *Cloud) notify(nodes ...string) {
	if c.cfg.Notify == nil {
		return
	}
	seen := map[string]bool{}
	for _, n := range nodes {
		if n != "" && !seen[n] {
			seen[n] = true
			c.cfg.Notify(n)
		}
	}
}

// notifyInTx tells NotifyInTx the nodes (once each, empty names left out)
// inside tx; with no NotifyInTx, Notify is told once tx commits.
func (c *Cloud) notifyInTx(ctx context.Context, tx *store.Tx, nodes ...string) error {
	if c.cfg.NotifyInTx == nil {
		tx.AfterCommit(func() { c.notify(nodes...) })
		return nil
	}
	ids := make([]string, 0, len(nodes))
	for _, n := range nodes {
		if n != "" {
			ids = append(ids, n)
		}
	}
	slices.Sort(ids)
	return c.cfg.NotifyInTx(ctx, tx, slices.Compact(ids)...)
}

// validRegionName admits any name an operator may choose ("us-east-1" for
// libraries that expect an AWS region, "ironbark", "site-2") that can
// appear in credential files, ARNs and zone ids as it is.
func validRegionName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return true
}

// DefaultRegion is the region name when the config names none.
const DefaultRegion = "ironbark"

// actionSpec is one action: the parameters it accepts (ec2.Params.Check
// patterns; any other is UnknownParameter, as EC2 answers) and its
// handler. The lists live next to the handlers.
type actionSpec struct {
	params []string
	run    action
	audit  auditing // readOnly or audited (audit.go)
}

func (c *Cloud) actionTable() map[string]actionSpec {
	return map[string]actionSpec{
		"DescribeRegions":               {describeRegionsParams, c.describeRegions, readOnly},
		"DescribeAvailabilityZones":     {describeAvailabilityZonesParams, c.describeAvailabilityZones, readOnly},
		"DescribeInstanceTypes":         {describeInstanceTypesParams, c.describeInstanceTypes, readOnly},
		"RunInstances":                  {runInstancesParams, c.runInstances, audited},
		"DescribeInstances":             {describeInstancesParams, c.describeInstances, readOnly},
		"TerminateInstances":            {terminateInstancesParams, c.terminateInstances, audited},
		"StopInstances":                 {stopInstancesParams, c.stopInstances, audited},
		"StartInstances":                {startInstancesParams, c.startInstances, audited},
		"RebootInstances":               {rebootInstancesParams, c.rebootInstances, audited},
		"DescribeInstanceStatus":        {describeInstanceStatusParams, c.describeInstanceStatus, readOnly},
		"GetConsoleOutput":              {getConsoleOutputParams, c.getConsoleOutput, readOnly},
		"CreateKeyPair":                 {createKeyPairParams, c.createKeyPair, audited},
		"ImportKeyPair":                 {importKeyPairParams, c.importKeyPair, audited},
		"DeleteKeyPair":                 {deleteKeyPairParams, c.deleteKeyPair, audited},
		"DescribeKeyPairs":              {describeKeyPairsParams, c.describeKeyPairs, readOnly},
		"CreateSecurityGroup":           {createSecurityGroupParams, c.createSecurityGroup, audited},
		"DeleteSecurityGroup":           {deleteSecurityGroupParams, c.deleteSecurityGroup, audited},
		"DescribeSecurityGroups":        {describeSecurityGroupsParams, c.describeSecurityGroups, readOnly},
		"AuthorizeSecurityGroupIngress": {securityGroupRuleParams, c.authorizeIngress, audited},
		"AuthorizeSecurityGroupEgress":  {securityGroupRuleParams, c.authorizeEgress, audited},
		"RevokeSecurityGroupIngress":    {securityGroupRuleParams, c.revokeIngress, audited},
		"RevokeSecurityGroupEgress":     {securityGroupRuleParams, c.revokeEgress, audited},
		"AllocateAddress":               {allocateAddressParams, c.allocateAddress, audited},
		"ReleaseAddress":                {releaseAddressParams, c.releaseAddress, audited},
		"AssociateAddress":              {associateAddressParams, c.associateAddress, audited},
		"DisassociateAddress":           {disassociateAddressParams, c.disassociateAddress, audited},
		"DescribeAddresses":             {describeAddressesParams, c.describeAddresses, readOnly},
		"RegisterImage":                 {registerImageParams, c.registerImage, audited},
		"DeregisterImage":               {deregisterImageParams, c.deregisterImage, audited},
		"DescribeImages":                {describeImagesParams, c.describeImages, readOnly},
		"DescribeImageAttribute":        {describeImageAttributeParams, c.describeImageAttribute, readOnly},
		"ModifyImageAttribute":          {modifyImageAttributeParams, c.modifyImageAttribute, audited},
		"ResetImageAttribute":           {resetImageAttributeParams, c.resetImageAttribute, audited},
		"DescribeVpcs":                  {describeVpcsParams, c.describeVpcs, readOnly},
		"DescribeSubnets":               {describeSubnetsParams, c.describeSubnets, readOnly},
		"DescribeAccountAttributes":     {describeAccountAttributesParams, c.describeAccountAttributes, readOnly},
		"DescribeNetworkInterfaces":     {describeNetworkInterfacesParams, c.describeNetworkInterfaces, readOnly},
		"DescribeInstanceAttribute":     {describeInstanceAttributeParams, c.describeInstanceAttribute, readOnly},
		"ModifyInstanceAttribute":       {modifyInstanceAttributeParams, c.modifyInstanceAttribute, audited},
		"CreateTags":                    {createTagsParams, c.createTags, audited},
		"DeleteTags":                    {deleteTagsParams, c.deleteTags, audited},
		"DescribeTags":                  {describeTagsParams, c.describeTags, readOnly},
	}
}

// ServeEC2 implements ec2.Handler.
func (c *Cloud) ServeEC2(ctx context.Context, r *ec2.Request) (any, error) {
	c.noteKeyUse(ctx, r.Principal.AccessKey)
	table := c.actions
	switch {
	case r.IsSTS():
		table = c.stsActions
	case r.IsIAM():
		table = c.iamActions
	}
	a, ok := table[r.Action]
	if !ok {
		return nil, ec2.Errorf("InvalidAction", "The action %s is not valid for this web service.", r.Action)
	}
	now := c.now()
	resp, err := c.run(ctx, a, &call{Request: r, now: now})
	if a.audit != readOnly { // only calls that may change state are recorded
		c.audit(ctx, r, now, resp, err)
	}
	return resp, err
}

// run checks the call's parameters and runs its action.
func (c *Cloud) run(ctx context.Context, a actionSpec, k *call) (any, error) {
	if err := k.Query().Check(a.params...); err != nil {
		return nil, err
	}
	return a.run(ctx, k)
}

// call is one action's request with the caller's identity at hand.
type call struct {
	*ec2.Request
	now time.Time
}

func (k *call) account() string { return k.Principal.AccountID }
func (k *call) admin() bool     { return k.Principal.Admin }

// owns reports whether the caller may see or change a resource of owner.
func (k *call) owns(owner string) bool { return k.admin() || owner == k.account() }

// Returned is the answer of actions that only say they worked.
type Returned struct {
	ec2.ResponseMeta
	Return bool `xml:"return"`
}

func ok() (any, error) { return &Returned{Return: true}, nil }
