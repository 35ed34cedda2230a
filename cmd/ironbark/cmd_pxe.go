package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime/debug"
	"strconv"
	"time"

	tea "github.com/charmbracelet/bubbletea"

	"ironbark/controller/cluster"
	"ironbark/internal/pki"
	"ironbark/internal/store"
	"ironbark/pxe"
	"ironbark/pxe/bootapi"
	"ironbark/pxe/leases"
	"ironbark/roll"
	"ironbark/tui"
)

// openPXE opens the store with the pxe migrations, and the data dir's
// pxe layout.
func (e *env) openPXE(ctx context.Context) (*store.DB, pxe.Layout, error) {
	db, err := e.openStore(ctx, pxe.Migrations())
	return db, pxe.Layout{DataDir: e.dataDir}, err
}

func pxeServe(fs *flag.FlagSet) runFunc {
	var cfg pxe.ServiceConfig
	iface := fs.String("interface", "", "cluster private interface to serve on (required)")
	subnet := fs.String("subnet", "", "served subnet (default: the interface's own)")
	port := fs.Int("http-port", 8080, "HTTP boot server port on the interface address")
	kargs := fs.String("kernel-args", "console=ttyS0 console=tty0", "extra kernel arguments for the installer")
	onFail := fs.String("on-fail", "reboot", "installer's action after a failed install: reboot, halt or poweroff")
	finish := fs.String("after-install", bootapi.FinishReboot, "how a node starts its installed system: reboot (through the firmware and PXE) or kexec (straight into the kernel its disk's syslinux entry names; a disk without one, like a Xen node's GRUB disk, reboots)")
	ctrl := fs.String("controller-url", "", "controller's node API URL written into each node's identity (default: https://ADDRESS:8774, the interface's address: the frontend's controller)")
	tftpDir := fs.String("tftp-dir", "/usr/lib/ipxe", "directory with undionly.kpxe, snponly.efi, ipxe.efi")
	verbose := fs.Bool("v", false, "log every DHCP decision")
	return func(ctx context.Context, e *env) error {
		if *iface == "" {
			return e.usagef("pxe: --interface is required")
		}
		if *subnet != "" {
			p, err := netip.ParsePrefix(*subnet)
			if err != nil {
				return e.usagef("pxe: --subnet: %v", err)
			}
			cfg.Subnet = p
		}
		if *finish != bootapi.FinishKexec && *finish != bootapi.FinishReboot {
			return e.usagef("pxe: --after-install %q: want kexec or reboot", *finish)
		}
		level := slog.LevelInfo
		if *verbose {
			level = slog.LevelDebug
		}
		cfg.Interface, cfg.HTTPPort, cfg.TFTPDir, cfg.KernelArgs, cfg.OnFail, cfg.Finish = *iface, *port, *tftpDir, *kargs, *onFail, *finish
		cfg.Log = e.logger(level)
		if os.Getenv("GOGC") == "" {
			debug.SetGCPercent(pxe.GCPercent)
		}
		return servePXE(ctx, e, cfg, *ctrl)
	}
}

func servePXE(ctx context.Context, e *env, cfg pxe.ServiceConfig, controllerURL string) error {
	// The rolls' store too: root's keys on each node are its
	// ssh_authorized_keys attribute, resolved at each install.
	db, rolls, err := e.openRolls(ctx)
	if err != nil {
		return err
	}
	layout := pxe.Layout{DataDir: e.dataDir}
	reg, err := cluster.NewRegistry(ctx, db)
	if err != nil {
		return err
	}
	ca, err := pki.LoadOrCreateCA(e.dir().PKI())
	if err != nil {
		return err
	}
	if controllerURL == "" {
		// On a frontend the controller's node API listens on every
		// interface, the private one included: where nodes reach it.
		ip, _, err := pxe.InterfaceAddr(cfg.Interface)
		if err != nil {
			return err
		}
		controllerURL = "https://" + net.JoinHostPort(ip.String(), "8774")
	}
	cfg.DB, cfg.Layout = db, layout
	cfg.Identity = pxe.TokenIdentity{Registry: reg, CA: ca, ControllerURL: controllerURL}
	cfg.Keys = pxe.AttrKeys{Attrs: roll.NewAttrs(db), Graph: rolls}
	return pxe.RunService(ctx, cfg)
}

func pxeSetup(fs *flag.FlagSet) runFunc {
	kernel := fs.String("kernel", "", "installer kernel (bzImage)")
	modules := fs.String("modules", "", "the kernel's module tree, /lib/modules/VERSION (with modules.dep)")
	inst := fs.String("installer", "", "static ironbark-installer binary")
	return func(ctx context.Context, e *env) error {
		if *kernel == "" || *modules == "" || *inst == "" {
			return e.usagef("pxe setup: --kernel, --modules and --installer are required")
		}
		l := pxe.Layout{DataDir: e.dataDir}
		if err := l.InstallBootFiles(*kernel, *inst, *modules); err != nil {
			return err
		}
		e.say("installer kernel and initramfs installed in %s", l.BootDir())
		return nil
	}
}

// applianceImages opens the images appliances install: their table and
// the blob store.
func (e *env) applianceImages(ctx context.Context) (*pxe.BlobImages, error) {
	db, l, err := e.openPXE(ctx)
	if err != nil {
		return nil, err
	}
	blobs, err := l.Blobs()
	if err != nil {
		return nil, err
	}
	return &pxe.BlobImages{DB: db, Blobs: blobs}, nil
}

func pxeImage(fs *flag.FlagSet) runFunc {
	return func(ctx context.Context, e *env) error {
		images, err := e.applianceImages(ctx)
		if err != nil {
			return err
		}
		d, size, err := images.Set(ctx, e.args[0], e.args[1])
		if err != nil {
			return err
		}
		e.say("appliance %s installs %s (%d bytes)", e.args[0], d, size)
		return nil
	}
}

// discoverFlags are the flags of `ironbark discover`.
type discoverFlags struct {
	appliance, cluster string
	rack, max          int
	noTUI              bool
}

func discover(fs *flag.FlagSet) runFunc {
	var f discoverFlags
	fs.StringVar(&f.appliance, "appliance", "compute", "appliance of the discovered nodes")
	fs.StringVar(&f.cluster, "cluster", "", "cluster the nodes join (required)")
	fs.IntVar(&f.rack, "rack", 0, "rack number in the names <appliance>-<rack>-<rank>")
	fs.BoolVar(&f.noTUI, "no-tui", false, "print one line per discovered node instead of the screen")
	fs.IntVar(&f.max, "max", pxe.DefaultMaxHosts, "most new hosts this session admits; MACs beyond it are refused and counted")
	return func(ctx context.Context, e *env) error {
		if f.cluster == "" {
			return e.usagef("discover: --cluster is required")
		}
		if err := e.checkAppliance(ctx, f.appliance); err != nil {
			return fmt.Errorf("discover: %w", err)
		}
		return runDiscover(ctx, e, f)
	}
}

// runDiscover names nodes until ctx ends (or q on the screen): discovered
// nodes are data on stdout, the rest goes to stderr.
func runDiscover(ctx context.Context, e *env, f discoverFlags) error {
	db, _, err := e.openPXE(ctx)
	if err != nil {
		return err
	}
	hosts := pxe.NewHosts(db)
	disc := pxe.NewDiscovery(db, hosts)
	if f.max <= 0 {
		return e.usagef("discover: --max must be positive")
	}
	sess, err := disc.Start(ctx, f.appliance, f.cluster, f.rack, f.max)
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = disc.Stop(sctx, sess)
	}()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go func() {
		if err := disc.KeepAlive(ctx, sess); err != nil {
			cancel(err)
		}
	}()
	poll := func(ctx context.Context) ([]tui.DiscoveredNode, error) {
		hs, err := disc.Since(ctx, sess)
		if err != nil {
			return nil, err
		}
		out := make([]tui.DiscoveredNode, len(hs))
		for i, h := range hs {
			out[i] = tui.DiscoveredNode{Name: h.Name, MAC: h.MAC, IP: h.IP, Status: h.Status()}
		}
		return out, nil
	}
	// refusals says what the session turned away, read from the store
	// (the DHCP server counts them there).
	refusals := func(ctx context.Context) string {
		s, ok, err := disc.Active(ctx)
		if err != nil || !ok || s.Refused == 0 {
			return ""
		}
		return fmt.Sprintf("%d MAC(s) refused (last: %s)", s.Refused, s.LastRefused)
	}
	ended := func(n int, refused string) {
		if refused == "" {
			refused = "none refused"
		}
		e.say("discovery ended: %d node(s) discovered, %s", n, refused)
	}
	if f.noTUI {
		e.say("discovering %s appliances for cluster %s, rack %d, at most %d; interrupt to end", sess.Appliance, sess.Cluster, sess.Rack, sess.Max)
		seen := map[string]bool{}
		lastRefused := ""
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		// report prints what is new since the last look.
		report := func(ctx context.Context) error {
			nodes, err := poll(ctx)
			if err != nil {
				return err
			}
			for _, n := range nodes {
				if !seen[n.Name] && n.IP != "" {
					seen[n.Name] = true
					fmt.Fprintf(e.stdout, "discovered %s mac=%s ip=%s\n", n.Name, n.MAC, n.IP)
				}
			}
			if r := refusals(ctx); r != "" && r != lastRefused {
				lastRefused = r
				e.say("%s", r)
			}
			return nil
		}
		for {
			if err := report(ctx); err != nil && ctx.Err() == nil {
				return err
			}
			select {
			case <-ctx.Done():
				if c := context.Cause(ctx); c != nil && !errors.Is(c, context.Canceled) {
					return c
				}
				// A last look, so the total counts every host admitted
				// before the end.
				lctx, lcancel := context.WithTimeout(context.Background(), 5*time.Second)
				err := report(lctx)
				lcancel()
				if err != nil {
					e.say("discover: last look at the session: %v", err)
				}
				ended(len(seen), lastRefused)
				return nil
			case <-t.C:
			}
		}
	}
	screen := &tui.DiscoveryScreen{
		Title: fmt.Sprintf("Discovering %s appliances for cluster %s, rack %d", sess.Appliance, sess.Cluster, sess.Rack),
		Poll:  poll,
	}
	p := tea.NewProgram(screen, tea.WithContext(ctx), tea.WithAltScreen())
	if _, err := p.Run(); err != nil && !errors.Is(err, tea.ErrProgramKilled) {
		return err
	}
	if c := context.Cause(ctx); c != nil && !errors.Is(c, context.Canceled) {
		return c
	}
	rctx, rcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer rcancel()
	ended(len(screen.Nodes()), refusals(rctx))
	for _, n := range screen.Nodes() {
		fmt.Fprintf(e.stdout, "discovered %s mac=%s ip=%s\n", n.Name, n.MAC, n.IP)
	}
	return nil
}

// hostRow is a line of `host list`, and its JSON shape.
type hostRow struct {
	Name      string `json:"name"`
	MAC       string `json:"mac"`
	IP        string `json:"ip"`
	Appliance string `json:"appliance"`
	Rack      int    `json:"rack"`
	Rank      int    `json:"rank"`
	Cluster   string `json:"cluster"`
	Boot      string `json:"boot"`
	Install   string `json:"install"`
}

func hostList(fs *flag.FlagSet) runFunc {
	return func(ctx context.Context, e *env) error {
		db, _, err := e.openPXE(ctx)
		if err != nil {
			return err
		}
		hs, err := pxe.NewHosts(db).List(ctx)
		if err != nil {
			return err
		}
		rows := make([]hostRow, len(hs))
		for i, h := range hs {
			rows[i] = hostRow{Name: h.Name, MAC: h.MAC, IP: h.IP, Appliance: h.Appliance, Rack: h.Rack, Rank: h.Rank,
				Cluster: h.Cluster, Boot: string(h.Boot), Install: h.Status()}
		}
		return printList(e, []string{"HOST", "MAC", "IP", "APPLIANCE", "RACK", "RANK", "CLUSTER", "BOOT", "INSTALL"}, rows)
	}
}

func (r hostRow) cells() []string {
	return []string{r.Name, r.MAC, dash(r.IP), r.Appliance, strconv.Itoa(r.Rack), strconv.Itoa(r.Rank), dash(r.Cluster), r.Boot, r.Install}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func hostAdd(fs *flag.FlagSet) runFunc {
	mac := fs.String("mac", "", "MAC address (required)")
	appliance := fs.String("appliance", "compute", "appliance")
	rack := fs.Int("rack", 0, "rack")
	rank := fs.Int("rank", -1, "rank (default: next free in the rack)")
	ip := fs.String("ip", "", "static IPv4 address (default: from the pool at first boot)")
	clusterName := fs.String("cluster", "", "cluster")
	boot := fs.String("boot", "install", "boot action: install, os or rescue")
	return func(ctx context.Context, e *env) error {
		if *mac == "" {
			return e.usagef("host add: --mac is required")
		}
		action, err := pxe.ParseBootAction(*boot)
		if err != nil {
			return e.usagef("host add: --boot: %v", err)
		}
		spec := pxe.AddHost{MAC: *mac, IP: *ip, Appliance: *appliance, Rack: *rack, Rank: *rank, Cluster: *clusterName, Boot: action}
		if len(e.args) == 1 {
			spec.Name = e.args[0]
		}
		db, _, err := e.openPXE(ctx)
		if err != nil {
			return err
		}
		h, err := pxe.NewHosts(db).Add(ctx, spec)
		if err != nil {
			return err
		}
		e.say("added %s mac=%s ip=%s boot=%s", h.Name, h.MAC, dash(h.IP), h.Boot)
		return nil
	}
}

func hostRemove(fs *flag.FlagSet) runFunc {
	return func(ctx context.Context, e *env) error { return removeHost(ctx, e, e.args[0]) }
}

func removeHost(ctx context.Context, e *env, name string) error {
	db, _, err := e.openPXE(ctx)
	if err != nil {
		return err
	}
	hosts := pxe.NewHosts(db)
	h, err := hosts.Get(ctx, name)
	if err != nil {
		return err
	}
	if err := hosts.Remove(ctx, h.Name); err != nil {
		return err
	}
	// A removed host's install token must not enroll anything.
	reg, err := cluster.NewRegistry(ctx, db)
	if err != nil {
		return err
	}
	if _, err := reg.RevokeHostTokens(ctx, h.Name); err != nil {
		return err
	}
	ls, err := leases.New(ctx, db, leases.Config{})
	if err != nil {
		return err
	}
	mac, err := net.ParseMAC(h.MAC)
	if err != nil {
		return err
	}
	if err := ls.Forget(ctx, mac); err != nil {
		return err
	}
	e.say("removed %s (%s)", h.Name, h.MAC)
	return nil
}

func hostSetBoot(fs *flag.FlagSet) runFunc {
	return func(ctx context.Context, e *env) error {
		action, err := pxe.ParseBootAction(e.args[1])
		if err != nil {
			return e.usagef("host set-boot: %v", err)
		}
		db, _, err := e.openPXE(ctx)
		if err != nil {
			return err
		}
		if err := pxe.NewHosts(db).SetBoot(ctx, e.args[0], action); err != nil {
			return err
		}
		// A new decision ends the host's install attempt: its token, if
		// one is out and unused, no longer enrolls anything.
		reg, err := cluster.NewRegistry(ctx, db)
		if err != nil {
			return err
		}
		n, err := reg.RevokeHostTokens(ctx, e.args[0])
		if err != nil {
			return err
		}
		if n > 0 {
			e.say("%s: its unused enrollment token is revoked", e.args[0])
		}
		e.say("%s will boot %s next", e.args[0], action)
		return nil
	}
}
