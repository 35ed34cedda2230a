package rack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"ironbark/internal/lab"
)

// The lab's fixed addresses: the frontend's private side (its answers'
// default), and the admin password the answers give (the lab is private).
const (
	privateAddr   = "10.1.1.1"
	adminPassword = "ironbark rack lab"
)

// Config says what rack to bring up.
type Config struct {
	// Root is the source tree the binaries are built from (with go.mod).
	Root string
	// Cache keeps what later runs reuse (default <lab cache>/rack).
	Cache string
	// Nodes is how many blank compute machines to power on (default 2).
	Nodes int
	// Public is the host's side of the frontend's public network
	// (default: the first of publicCandidates this machine does not
	// reach already); the frontend takes .10.
	Public netip.Prefix
	// HostRoute puts the public network's host side in this machine's
	// root namespace (a veth with Public's address), so the AWS CLI
	// runs from any shell; without it everything stays in the lab
	// namespace (the test).
	HostRoute bool
	// LabFrontend puts the lab frontend image on the ISO (busybox and
	// the static ironbark, an admin shell instead of sshd) instead of the
	// frontend appliance built from the rolls.
	LabFrontend bool
	// Instance runs step 5's instance with the AWS CLI.
	Instance bool
	// Check ends the run once every step is checked, instead of
	// staying up until ctx ends.
	Check bool
	// Out gets the steps, the eucarc and the status line.
	Out io.Writer
	// Log gets details (debug: every lab action).
	Log *slog.Logger
	// Guard bounds each step against hangs (default 30 minutes).
	Guard time.Duration
}

func (c *Config) defaults() error {
	if c.Root == "" {
		return errors.New("rack: no source tree (Root)")
	}
	if _, err := os.Stat(filepath.Join(c.Root, "go.mod")); err != nil {
		return fmt.Errorf("rack: %s is not the source tree: %w", c.Root, err)
	}
	if c.Cache == "" {
		c.Cache = filepath.Join(lab.CacheDir(), "rack")
	}
	if c.Nodes == 0 {
		c.Nodes = 2
	}
	if c.Nodes < 0 || c.Nodes > 9 {
		return fmt.Errorf("rack: %d nodes: from 1 to 9 on one machine", c.Nodes)
	}
	if !c.Public.IsValid() {
		c.Public = publicCandidates[0]
		if c.HostRoute {
			nets, err := hostNets()
			if err != nil {
				return err
			}
			if c.Public, err = choosePublic(nets); err != nil {
				return err
			}
		}
	}
	if c.Public.Bits() != 24 || !c.Public.Addr().Is4() {
		return fmt.Errorf("rack: public network %s: want an IPv4 /24", c.Public)
	}
	if c.Out == nil {
		c.Out = io.Discard
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.Guard == 0 {
		c.Guard = 30 * time.Minute
	}
	return nil
}

// frontendAddr is the frontend's public address: .10 of Public.
func (c *Config) frontendAddr() netip.Addr {
	b := c.Public.Masked().Addr().As4()
	b[3] = 10
	return netip.AddrFrom4(b)
}

// Result is what a run made and saw, for its caller's checks.
type Result struct {
	Work      string   // the run's directory (VM disks, consoles; gone when Run returns)
	Namespace string   // the lab namespace (gone when Run returns)
	Links     []string // root-namespace links it made
	Nodes     []string // enrolled node host names
	Instance  string   // the instance that ran, when Instance
	Console   string   // the instance's console output
	Steps     []Step
}

// Step is one numbered step with how long it took.
type Step struct {
	N       int
	Title   string
	Elapsed time.Duration
}

// runner holds one run's state.
type runner struct {
	cfg   Config
	undo  *undo
	work  string
	start time.Time
	res   *Result

	mu    sync.Mutex
	steps []Step

	ns       *lab.NetNS
	pub      string // public bridge (in ns)
	priv     string // private bridge (in ns)
	frontend *vm
	nodes    []*vm
	admin    channel
	art      *artifacts
	creds    string // local credentials dir (eucarc, ca.pem, config, credentials)
}

// Run brings the rack up, step by step, and keeps it up until ctx ends
// (or, with Check, until every step is checked); then it removes
// everything it made. The error is the first step that failed.
func Run(ctx context.Context, cfg Config) (res *Result, err error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Cache, 0o755); err != nil {
		return nil, err
	}
	r := &runner{cfg: cfg, undo: &undo{log: cfg.Log}, start: time.Now(), res: &Result{}}
	defer func() {
		r.say("rack: removing what it made")
		r.undo.run()
		res = r.res
		res.Steps = r.steps
	}()
	defer catch(&err)
	r.work, err = os.MkdirTemp("/var/tmp", "ironbark-rack-")
	if err != nil {
		return nil, err
	}
	// qemu and its consoles read and write here.
	if err := os.Chmod(r.work, 0o755); err != nil {
		return nil, err
	}
	r.res.Work = r.work
	r.undo.Cleanup(func() { os.RemoveAll(r.work) })

	steps := []struct {
		title string
		run   func(context.Context) error
	}{
		{"build the ISO (frontend and compute appliances)", r.stepBuild},
		{"lab network: public bridge " + cfg.Public.String() + ", private cluster bridge (no uplink, no NAT)", r.stepNetwork},
		{"install the frontend from the ISO, unattended, and boot it", r.stepFrontend},
		{fmt.Sprintf("discovery on the frontend; %d blank compute machine(s) PXE-install and enroll", cfg.Nodes), r.stepNodes},
		{"credentials from the frontend" + map[bool]string{true: "; an instance with the AWS CLI", false: ""}[cfg.Instance], r.stepCloud},
	}
	r.say("rack: every machine here is a qemu process under TCG (no hardware virtualization): the frontend, and each compute node running Xen with its dom0 (and guests) emulated; on machines with KVM the same appliances run at full speed")
	for i, s := range steps {
		r.say("[%d/6] %s", i+1, s.title)
		t0 := time.Now()
		sctx, cancel := context.WithTimeout(ctx, cfg.Guard)
		err := s.run(sctx)
		cancel()
		if err == nil && ctx.Err() != nil {
			err = ctx.Err()
		}
		el := time.Since(t0)
		r.steps = append(r.steps, Step{N: i + 1, Title: s.title, Elapsed: el})
		if err != nil {
			r.say("[%d/6] failed after %s: %v", i+1, el.Round(time.Second), err)
			return nil, fmt.Errorf("step %d (%s): %w", i+1, s.title, err)
		}
		r.say("[%d/6] done in %s (%s since start)", i+1, el.Round(100*time.Millisecond), time.Since(r.start).Round(time.Second))
	}
	if cfg.Check {
		r.say("[6/6] checks done: rack up in %s", time.Since(r.start).Round(time.Second))
		return nil, nil
	}
	r.say("[6/6] up in %s; Ctrl-C stops and removes everything", time.Since(r.start).Round(time.Second))
	r.status(ctx)
	return nil, nil
}

// say prints a line of the run's story.
func (r *runner) say(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	fmt.Fprintf(r.cfg.Out, format+"\n", args...)
}

// command runs a host program to completion; its output goes to the log.
func (r *runner) command(ctx context.Context, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	out, err := cmd.CombinedOutput()
	r.cfg.Log.Debug("command", "cmd", name+" "+strings.Join(args, " "), "output", string(out))
	if err != nil {
		return fmt.Errorf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, tailLines(string(out), 30))
	}
	return nil
}

func (r *runner) stepBuild(ctx context.Context) error {
	a, err := r.build(ctx)
	if err != nil {
		return err
	}
	r.art = a
	for _, c := range a.cached {
		r.say("  cached: %s", c)
	}
	return nil
}

// stepNetwork makes the lab namespace with its two bridges; with
// HostRoute, the public bridge's host side is a veth in the root
// namespace that carries Public's address.
func (r *runner) stepNetwork(ctx context.Context) error {
	c := r.cfg
	if c.HostRoute {
		// The rack's traffic must stay on the veth it adds: a network this
		// machine reaches already (its own LAN, another rack) would take
		// it elsewhere.
		nets, err := hostNets()
		if err != nil {
			return err
		}
		if n, taken := overlap(c.Public, nets); taken {
			return fmt.Errorf("public network %s overlaps %s, which this machine already reaches (its own network, or another rack): give a free /24 with --public", c.Public.Masked(), n)
		}
	}
	r.ns = lab.NewNetNS(r.undo)
	r.res.Namespace = r.ns.Name
	if c.HostRoute {
		r.pub = r.ns.Bridge(r.undo, netip.Prefix{})
		root := r.ns.VethToRoot(r.undo, r.pub)
		r.res.Links = append(r.res.Links, root)
		if out, err := exec.CommandContext(ctx, "ip", "addr", "add", c.Public.String(), "dev", root).CombinedOutput(); err != nil {
			return fmt.Errorf("ip addr add %s dev %s: %v: %s", c.Public, root, err, out)
		}
		r.say("  namespace %s: public bridge %s, joined to this host by %s (%s)", r.ns.Name, r.pub, root, c.Public)
	} else {
		r.pub = r.ns.Bridge(r.undo, c.Public)
		r.say("  namespace %s: public bridge %s (%s)", r.ns.Name, r.pub, c.Public)
	}
	r.priv = r.ns.Bridge(r.undo, netip.Prefix{})
	r.say("  private cluster bridge %s (only the frontend and the nodes on it)", r.priv)
	return nil
}

// addressInUse reports whether addr is on an interface of the root
// dial connects to addr on the public network: from the host with
// HostRoute, else from inside the lab namespace.
func (r *runner) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	if r.cfg.HostRoute {
		return d.DialContext(ctx, network, addr)
	}
	var c net.Conn
	err := r.ns.Do(func() error {
		var err error
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// hostCommand is a host program that reaches the public network: in the
// lab namespace unless HostRoute.
func (r *runner) hostCommand(ctx context.Context, name string, args ...string) *exec.Cmd {
	if r.cfg.HostRoute {
		return exec.CommandContext(ctx, name, args...)
	}
	return r.ns.Command(ctx, name, args...)
}

func tailLines(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(l[max(0, len(l)-n):], "\n")
}
