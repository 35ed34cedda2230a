package nodeagent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"ironbark/internal/nodeapi"
	"ironbark/internal/retry"
	"ironbark/nodeagent/imagecache"
)

// Config is the agent's configuration (flags or the node config file).
type Config struct {
	Controller string // https://HOST:PORT of the node API
	Token      string // one-time enrollment token; needed only until enrolled
	LibvirtURI string // xen:///system, qemu:///system, test:///default
	StateDir   string // identity, image cache, instance disks
	Bridge     string // cluster bridge for instance NICs ("" for none)
	DomainType string // qemu (TCG) or kvm, for qemu:// URIs
	Hostname   string
	// IdentityFile is the installer's node identity (nodeapi.Identity,
	// JSON): Controller, Token and Hostname come from it when not set.
	// Once enrolled, the spent token is dropped from it.
	IdentityFile string
	Logger       *slog.Logger
	// StopTimeout is how long a stopping guest gets to power off before
	// the domain is destroyed (default 30 s).
	StopTimeout time.Duration
	// HypervisorGrace is how long pending launches wait for an unreachable
	// libvirt before they are failed, and how long a first enrollment
	// waits for the hypervisor to report the host's cores and memory
	// before it enrolls without them (default 60 s).
	HypervisorGrace time.Duration
	// LaunchAttempts bounds retries of a launch that failed transiently
	// (default 3).
	LaunchAttempts int
	// FetchPatience is how long a launch keeps retrying an image download
	// whose source is unreachable (the controller restarting or upgraded)
	// before it fails (default 10 min). Such retries do not count against
	// LaunchAttempts.
	FetchPatience time.Duration
	// LibvirtTimeout bounds every libvirt call (default 60 s, 3 min for
	// xen:// URIs): a hung
	// libvirtd makes the hypervisor count as unreachable, while
	// heartbeats, DHCP and the metadata service go on.
	LibvirtTimeout time.Duration
	// QemuImg is the qemu-img binary (default "qemu-img").
	QemuImg string
	// XenConsoleDir is where xenconsoled (--log=guest) writes each Xen
	// guest's console as guest-NAME.log, which GetConsoleOutput reads
	// (default /var/log/xen/console). Only for xen:// URIs.
	XenConsoleDir string
	// LibxlLogDir is where libvirt's libxl driver logs each domain as
	// NAME.log (default /var/log/libvirt/libxl): a failed Xen start's
	// errors from it go into the launch error. Only for xen:// URIs.
	LibxlLogDir string
	// MaxCores, MaxMemoryMiB and MaxDiskGiB, when positive, replace what
	// the node reports (Eucalyptus' MAX_CORES/MAX_MEM/MAX_DISK): to keep
	// room for dom0, or to overcommit cores.
	MaxCores, MaxMemoryMiB, MaxDiskGiB int
	// NoInstanceServices turns off the DHCP server and the metadata
	// service (169.254.169.254) the agent runs on Bridge for its instances.
	NoInstanceServices bool
	// PublicInterface is the node's public side, where elastic IPs arrive
	// (natmap.Config.PublicInterface); "" when the network routes the
	// public pool to the node.
	PublicInterface string
	// OutboundNAT masquerades instances without a public address out of
	// PublicInterface (off unless the operator turns it on).
	OutboundNAT bool
	// NetNS is the path of the network namespace that holds the bridge
	// and the public interface, for the gateway addresses and the NAT
	// table ("" the agent's own; tests give a node namespace).
	NetNS string
	// NoSecurityGroups turns off the enforcement of security groups on
	// Bridge (nftables table inet ironbark-sg-BRIDGE).
	NoSecurityGroups bool
}

// errNoCapacity marks a hypervisor's answer without cores or memory.
var errNoCapacity = errors.New("hypervisor does not know the host's capacity yet")

// Reasons reported with terminated and stopped instances.
const (
	ReasonGuestShutdown = "Client.InstanceInitiatedShutdown: the guest powered off"
	ReasonUserTerminate = "Client.UserInitiatedShutdown"
)

// Agent runs a node's instances.
type Agent struct {
	cfg Config
	log *slog.Logger
	hv  *hypervisor
	// nodeInfo asks the hypervisor for the host's cores and memory
	// (hv.capacity; tests stand in for a slow one).
	nodeInfo func() (cores, memoryMiB int, err error)
	dtype    string
	client   *nodeapi.Client
	cache    *imagecache.Cache
	id       nodeapi.Identity

	kickCh chan struct{} // reconcile now
	hbCh   chan struct{} // heartbeat now
	wg     sync.WaitGroup

	mu          sync.Mutex
	desired     []nodeapi.InstanceSpec
	haveDesired bool
	insts       map[string]*inst
	gone        map[string]bool // cleaned up, not desired: report terminated once
	hvDownSince time.Time
	// desiredGroups are the security groups that came with desired.
	desiredGroups []nodeapi.SecurityGroup
	fwMu          sync.Mutex // held by syncSecurityGroups
	fw            firewall
	capacity      nodeapi.Capacity
	net           netState  // NAT and bridge gateways (network.go); reconcile's goroutine only
	vlans         vlanState // MANAGED mode's VLANs (vlan.go); its own lock, taken before mu
	// gen counts completed background libvirt work (launches, stops,
	// removals): reconcile takes its domain snapshot without the lock and
	// retakes it when gen moved meanwhile.
	gen uint64
}

// inst is the agent's view of one instance.
type inst struct {
	state, reason string
	rebootSerial  int
	launching     bool
	cancel        context.CancelFunc
	attempts      int
	retryAt       time.Time
	fetchFailing  time.Time // since when downloads fail transiently; zero when not
	stopping      bool
	removing      bool
	busy          bool // a start, reboot or removal runs in the background
	seenRunning   bool
	guestStopped  bool
	consoleSent   string // hash of the console tail last delivered
	consoleSeen   string // size and mtime of the console file last looked at
}

// New checks the configuration and prepares the state dir; Run does the
// work.
func New(cfg Config) (*Agent, error) {
	if err := applyIdentityFile(&cfg); err != nil {
		return nil, err
	}
	if cfg.Controller == "" {
		return nil, errors.New("no controller: give the installer's identity file (--identity) or --controller https://FRONTEND:8774")
	}
	if cfg.StateDir == "" || cfg.LibvirtURI == "" {
		return nil, errors.New("nodeagent: libvirt URI and state dir are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.DomainType == "" {
		cfg.DomainType = "qemu"
	}
	if cfg.StopTimeout <= 0 {
		cfg.StopTimeout = 30 * time.Second
	}
	if cfg.HypervisorGrace <= 0 {
		cfg.HypervisorGrace = 60 * time.Second
	}
	if cfg.LaunchAttempts <= 0 {
		cfg.LaunchAttempts = 3
	}
	if cfg.FetchPatience <= 0 {
		cfg.FetchPatience = 10 * time.Minute
	}
	if cfg.QemuImg == "" {
		cfg.QemuImg = "qemu-img"
	}
	if cfg.XenConsoleDir == "" {
		cfg.XenConsoleDir = "/var/log/xen/console"
	}
	if cfg.LibxlLogDir == "" {
		cfg.LibxlLogDir = "/var/log/libvirt/libxl"
	}
	if cfg.LibvirtTimeout <= 0 {
		cfg.LibvirtTimeout = 60 * time.Second
		if strings.HasPrefix(cfg.LibvirtURI, "xen") {
			// libxl gives each device's hotplug script 40 s of its
			// own; a domain start waits for all of them.
			cfg.LibvirtTimeout = 3 * time.Minute
		}
	}
	if cfg.Hostname == "" {
		cfg.Hostname, _ = os.Hostname()
	}
	if cfg.OutboundNAT && cfg.PublicInterface == "" {
		return nil, errors.New("outbound NAT needs the node's public interface (--public-interface)")
	}
	dt, err := domainType(cfg.LibvirtURI, cfg.DomainType)
	if err != nil {
		return nil, err
	}
	// Instance disks, console logs and images are the tenants': files
	// 0600, and directories nobody else lists. qemu runs as libvirt-qemu;
	// libvirt's DAC driver (dynamic_ownership) gives it the files of a
	// domain it starts, not the directories above them, so the path to
	// them is search-only (0711) and each instance directory is qemu's
	// own (0700, see instanceDirOwner).
	for _, d := range []struct {
		path string
		mode os.FileMode
	}{{cfg.StateDir, 0o711}, {filepath.Join(cfg.StateDir, "instances"), 0o711}, {filepath.Join(cfg.StateDir, "failed"), 0o700}} {
		if err := os.MkdirAll(d.path, d.mode); err != nil {
			return nil, fmt.Errorf("state dir: %w", err)
		}
		if err := os.Chmod(d.path, d.mode); err != nil {
			return nil, fmt.Errorf("state dir: %w", err)
		}
	}
	a := &Agent{
		cfg: cfg, log: cfg.Logger, hv: &hypervisor{uri: cfg.LibvirtURI, timeout: cfg.LibvirtTimeout}, dtype: dt,
		kickCh: make(chan struct{}, 1), hbCh: make(chan struct{}, 1),
		insts: map[string]*inst{}, gone: map[string]bool{},
	}
	a.nodeInfo = a.hv.capacity
	return a, nil
}

// NodeID is the enrolled node's ID ("" before enrollment).
func (a *Agent) NodeID() string { return a.id.NodeID }

// Run enrolls if needed, then heartbeats, follows the desired instances and
// reconciles libvirt with them until ctx ends. Launches in flight stop where
// they are; a later Run picks them up.
func (a *Agent) Run(ctx context.Context) error {
	defer a.hv.close()
	defer func() {
		a.fwMu.Lock()
		defer a.fwMu.Unlock()
		if a.fw.fw != nil {
			a.fw.fw.Release() // the rules stay: the instances keep running
		}
	}()
	if err := a.ensureIdentity(ctx); err != nil {
		return err
	}
	defer a.client.Close()
	cache, err := imagecache.New(filepath.Join(a.cfg.StateDir, "images"), a.client.HTTP(), a.log)
	if err != nil {
		return err
	}
	a.cache = cache
	a.log.Info("node agent running", "node", a.id.NodeID, "cluster", a.id.Cluster,
		"controller", a.cfg.Controller, "libvirt", a.cfg.LibvirtURI, "domainType", a.dtype)
	a.vlans.mu.Lock()
	a.vlans.ctx = ctx // the VLANs' services end with the run
	a.vlans.mu.Unlock()
	a.reconcile(ctx) // adopt what is there before reporting it
	a.wg.Go(func() { a.inNetNS(func() { a.serveInstanceNetwork(ctx) }) })
	a.wg.Add(2)
	go func() { defer a.wg.Done(); a.followDesired(ctx) }()
	go func() { defer a.wg.Done(); a.heartbeats(ctx) }()
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			a.log.Info("node agent stopping; instances keep running")
			a.wg.Wait()
			a.net.close()   // the rules stay: elastic IPs keep working
			a.vlans.close() // the VLANs stay: their instances keep running
			return nil
		case <-a.kickCh:
		case <-tick.C:
			a.syncSecurityGroups() // retries a failed one
		}
		a.reconcile(ctx)
		a.syncNetwork()
	}
}

func (a *Agent) ensureIdentity(ctx context.Context) error {
	id, tc, err := loadIdentity(a.cfg.StateDir)
	if errors.Is(err, os.ErrNotExist) {
		if a.cfg.Token == "" {
			return errors.New("not enrolled yet: give the installer's identity file (--identity) or a token (--token-file; ironbark node token --cluster NAME on the frontend)")
		}
		a.awaitCapacity(ctx)
		err = retry.Do(ctx, retry.Policy{
			Wait: time.Second, MaxWait: 15 * time.Second,
			Retryable: func(err error) bool { return !permanentEnrollError(err) },
			OnRetry:   func(err error, _ int, _ time.Duration) { a.log.Warn("enrollment failed, retrying", "err", err) },
		}, func(int) error {
			// With the hypervisor still silent the node enrolls with no
			// capacity (zero: unknown, never a real report); its first
			// real report, sent as soon as the hypervisor answers, then
			// counts as the enrolled one.
			_ = a.updateCapacity()
			id, err = enroll(ctx, a.cfg.StateDir, a.cfg.Controller, a.cfg.Token, a.cfg.Hostname, a.currentCapacity())
			return err
		})
		if err != nil {
			return err
		}
		a.log.Info("enrolled", "node", id.NodeID, "cluster", id.Cluster, "hostname", a.cfg.Hostname)
		a.scrubToken()
		if id, tc, err = loadIdentity(a.cfg.StateDir); err != nil {
			return err
		}
	} else if err != nil {
		return fmt.Errorf("load identity from %s: %w", a.cfg.StateDir, err)
	}
	a.id = id
	a.client = nodeapi.NewClient(a.cfg.Controller, tc)
	return nil
}

func (a *Agent) kick() {
	select {
	case a.kickCh <- struct{}{}:
	default:
	}
}

func (a *Agent) kickHeartbeat() {
	select {
	case a.hbCh <- struct{}{}:
	default:
	}
}

// followDesired follows the controller's desired instances: a stream of
// answers, one per change, reopened as each ends (nodeapi.Client.InstancesStream).
func (a *Agent) followDesired(ctx context.Context) {
	etag := ""
	// The member lists and instance specs of the last answer: the
	// controller sends the lists that changed as deltas to them and names
	// unchanged specs only (nodeapi.Held).
	var held nodeapi.Held
	got := func(d nodeapi.Desired) error {
		if d.ETag != etag || etag == "" {
			etag = d.ETag
			a.mu.Lock()
			a.desired, a.haveDesired = d.Instances, true
			a.desiredGroups = d.SecurityGroups
			a.mu.Unlock()
			a.syncSecurityGroups()
			a.kick()
		}
		return nil
	}
	for ctx.Err() == nil {
		err := a.client.InstancesStream(ctx, etag, 25*time.Second, &held, got)
		if errors.Is(err, nodeapi.ErrMembersBase) || errors.Is(err, nodeapi.ErrSpecsBase) {
			// That part of held is empty now: ask again at once for
			// whole lists and specs.
			a.log.Warn("desired instances: asking for whole member lists and specs", "err", err)
			etag = ""
			continue
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			a.log.Warn("desired instances", "err", err)
			sleep(ctx, 2*time.Second)
		}
	}
}

func (a *Agent) heartbeats(ctx context.Context) {
	interval := 10 * time.Second
	for ctx.Err() == nil {
		if iv, err := a.heartbeat(ctx); err != nil {
			if ctx.Err() == nil {
				a.log.Warn("heartbeat", "err", err)
			}
		} else if iv > 0 {
			interval = iv
		}
		t := time.NewTimer(interval)
		select {
		case <-ctx.Done():
		case <-t.C:
		case <-a.hbCh:
			// Coalesce a burst of state changes into one report.
			sleep(ctx, 25*time.Millisecond)
		}
		t.Stop()
	}
}

// awaitCapacity asks the hypervisor for the host's capacity until it
// answers or HypervisorGrace has passed: at boot the agent may start
// before libvirtd's driver can answer (Xen's toolstack comes up first),
// and a node should enroll with what it has, not with nothing.
func (a *Agent) awaitCapacity(ctx context.Context) {
	deadline := time.Now().Add(a.cfg.HypervisorGrace)
	wait := 500 * time.Millisecond
	for {
		err := a.updateCapacity()
		if err == nil || ctx.Err() != nil {
			return
		}
		left := time.Until(deadline)
		if left <= 0 {
			a.log.Warn("enrolling without the node's capacity: the hypervisor does not answer yet (reported as soon as it does)",
				"libvirt", a.cfg.LibvirtURI, "waited", a.cfg.HypervisorGrace, "err", err)
			return
		}
		a.log.Info("waiting for the hypervisor to report the host's capacity before enrolling", "libvirt", a.cfg.LibvirtURI, "err", err)
		sleep(ctx, min(wait, left))
		wait = min(2*wait, 5*time.Second)
	}
}

// updateCapacity asks the hypervisor for the host's cores and memory. When
// it does not answer (or answers with no cores or memory) the capacity
// stays what it was: unknown (zero) until the first answer, the last
// answer after. A change is logged and reported at once.
func (a *Agent) updateCapacity() error {
	cores, mem, err := a.nodeInfo()
	if err != nil {
		return err
	}
	if cores <= 0 || mem <= 0 {
		// A hypervisor still starting may answer before it knows the
		// host: that is no answer, not a host with nothing.
		return fmt.Errorf("%w: it reports %d cores and %d MiB", errNoCapacity, cores, mem)
	}
	var st syscall.Statfs_t
	disk := 0
	if err := syscall.Statfs(a.cfg.StateDir, &st); err == nil {
		disk = int(st.Blocks * uint64(st.Bsize) >> 30)
	}
	c := nodeapi.Capacity{Cores: cores, MemoryMiB: mem, DiskGiB: disk}
	for _, o := range []struct{ set, to *int }{{&a.cfg.MaxCores, &c.Cores}, {&a.cfg.MaxMemoryMiB, &c.MemoryMiB}, {&a.cfg.MaxDiskGiB, &c.DiskGiB}} {
		if *o.set > 0 {
			*o.to = *o.set
		}
	}
	a.mu.Lock()
	old := a.capacity
	a.capacity = c
	a.mu.Unlock()
	if c != old {
		a.log.Info("node capacity", "cores", c.Cores, "memoryMiB", c.MemoryMiB, "diskGiB", c.DiskGiB,
			"wasCores", old.Cores, "wasMemoryMiB", old.MemoryMiB, "wasDiskGiB", old.DiskGiB)
		a.kickHeartbeat()
	}
	return nil
}

func (a *Agent) currentCapacity() nodeapi.Capacity {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.capacity
}

// heartbeat sends every instance's state and the console tails that changed.
func (a *Agent) heartbeat(ctx context.Context) (time.Duration, error) {
	// No libvirt call here: the capacity is the one reconcile last read,
	// so a hung libvirtd does not stop heartbeats.
	a.mu.Lock()
	var ids []string
	for id := range a.insts {
		ids = append(ids, id)
	}
	for id := range a.gone {
		if a.insts[id] == nil {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	req := nodeapi.HeartbeatRequest{Hostname: a.cfg.Hostname, Capacity: a.capacity, Hypervisor: a.cfg.LibvirtURI, Full: true}
	sent := map[string]string{}
	for _, id := range ids {
		in := a.insts[id]
		if in == nil {
			req.Instances = append(req.Instances, nodeapi.InstanceStatus{InstanceID: id, State: nodeapi.StateTerminated})
			continue
		}
		st := nodeapi.InstanceStatus{InstanceID: id, State: in.state, Reason: in.reason, RebootSerial: in.rebootSerial}
		if tail, sum, err := consoleTail(a.consolePath(id)); err == nil && sum != in.consoleSent {
			st.ConsoleTail, sent[id] = tail, sum
		}
		req.Instances = append(req.Instances, st)
	}
	gone := make(map[string]bool, len(a.gone))
	for id := range a.gone {
		gone[id] = true
	}
	a.mu.Unlock()
	resp, err := a.client.Heartbeat(ctx, req)
	if err != nil {
		return 0, err
	}
	a.mu.Lock()
	for id, sum := range sent {
		if in := a.insts[id]; in != nil {
			in.consoleSent = sum
		}
	}
	for id := range gone {
		delete(a.gone, id)
	}
	a.mu.Unlock()
	return time.Duration(resp.IntervalSeconds) * time.Second, nil
}

func (a *Agent) instDir(id string) string { return filepath.Join(a.cfg.StateDir, "instances", id) }

// consolePath is the file the instance's console is logged to: the
// domain's serial file, or under Xen the one xenconsoled writes.
func (a *Agent) consolePath(id string) string {
	if a.dtype == "xen" {
		return filepath.Join(a.cfg.XenConsoleDir, "guest-"+id+".log")
	}
	return filepath.Join(a.instDir(id), "console.log")
}

// removeInstanceFiles deletes an instance's disks and, under Xen, the
// console log xenconsoled kept outside the instance's directory.
func (a *Agent) removeInstanceFiles(id string) error {
	err := os.RemoveAll(a.instDir(id))
	if a.dtype == "xen" {
		if rerr := os.Remove(a.consolePath(id)); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			err = errors.Join(err, rerr)
		}
	}
	return err
}

func (a *Agent) failedPath(id string) string { return filepath.Join(a.cfg.StateDir, "failed", id) }

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
