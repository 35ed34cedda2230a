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
	"text/tabwriter"
	"time"

	tea "github.com/charmbracelet/bubbletea"

	"ironbark/controller/cluster"
	"ironbark/internal/pki"
	"ironbark/internal/store"
	"ironbark/pxe"
	"ironbark/pxe/dhcp"
	"ironbark/tui"
)

// pxeCommands lists the pxe, discover and host subcommands.
func pxeCommands() []command {
	return []command{
		{name: "pxe", summary: "serve DHCP, TFTP and HTTP boot on an interface: pxe --interface IFACE [--subnet CIDR]", run: runPXE},
		{name: "pxe setup", summary: "install the installer kernel and initramfs: pxe setup --kernel VMLINUZ --modules DIR --installer BIN", run: runPXESetup},
		{name: "pxe image", summary: "set the disk image an appliance installs: pxe image APPLIANCE FILE", run: runPXEImage},
		{name: "discover", summary: "name PXE-booting nodes (insert-ethers): discover --appliance compute --cluster NAME [--rack R] [--no-tui]", run: runDiscover},
		{name: "host list", summary: "list hosts with boot action and install state", run: runHostList},
		{name: "host add", summary: "add a host: host add --mac MAC --appliance A [--rack R --rank N] [--ip IP] [--cluster C] [NAME]", run: runHostAdd},
		{name: "host remove", summary: "remove a host and its DHCP lease: host remove HOST", run: runHostRemove},
		{name: "host set-boot", summary: "set a host's next boot action: host set-boot HOST install|os|rescue", run: runHostSetBoot},
	}
}

// pxeDB opens the store of rf and applies the pxe migrations.
func pxeDB(ctx context.Context, rf storeFlags) (*store.DB, pxe.Layout, error) {
	db, err := rf.openStore(ctx, pxe.Migrations())
	return db, pxe.Layout{DataDir: rf.dataDir}, err
}

func runPXE(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("pxe", flag.ContinueOnError)
	var rf storeFlags
	rf.add(fs)
	iface := fs.String("interface", "", "cluster private interface to serve on (required)")
	subnet := fs.String("subnet", "", "served subnet (default: the interface's own)")
	port := fs.Int("http-port", 8080, "HTTP boot server port on the interface address")
	kargs := fs.String("kernel-args", "console=ttyS0 console=tty0", "extra kernel arguments for the installer")
	onFail := fs.String("on-fail", "reboot", "installer's action after a failed install: reboot, halt or poweroff")
	ctrl := fs.String("controller-url", "", "controller URL written into each node's identity")
	tftpDir := fs.String("tftp-dir", "/usr/lib/ipxe", "directory with undionly.kpxe, snponly.efi, ipxe.efi")
	verbose := fs.Bool("v", false, "log every DHCP decision")
	if _, err := parseArgs(fs, args, 0, "usage: ironbark "+fs.Name()+" [flags]: no arguments"); err != nil {
		return err
	}
	if *iface == "" {
		return errors.New("usage: ironbark pxe --interface IFACE [--subnet CIDR] [--data-dir DIR]")
	}
	var sub netip.Prefix
	if *subnet != "" {
		p, err := netip.ParsePrefix(*subnet)
		if err != nil {
			return fmt.Errorf("--subnet: %w", err)
		}
		sub = p
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	db, layout, err := pxeDB(ctx, rf)
	if err != nil {
		return err
	}
	defer db.Close()
	reg, err := cluster.NewRegistry(ctx, db)
	if err != nil {
		return err
	}
	ca, err := pki.LoadOrCreateCA(cluster.PKIDir(rf.dataDir))
	if err != nil {
		return err
	}
	return pxe.RunService(ctx, pxe.ServiceConfig{
		DB: db, Layout: layout, Interface: *iface, Subnet: sub, HTTPPort: *port, TFTPDir: *tftpDir,
		KernelArgs: *kargs, OnFail: *onFail, Log: log,
		Identity: pxe.TokenIdentity{Registry: reg, CA: ca, ControllerURL: *ctrl},
	})
}

func runPXESetup(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("pxe setup", flag.ContinueOnError)
	var rf storeFlags
	rf.add(fs)
	kernel := fs.String("kernel", "", "installer kernel (bzImage)")
	modules := fs.String("modules", "", "the kernel's module tree, /lib/modules/VERSION (with modules.dep)")
	inst := fs.String("installer", "", "static ironbark-installer binary")
	if _, err := parseArgs(fs, args, 0, "usage: ironbark "+fs.Name()+" [flags]: no arguments"); err != nil {
		return err
	}
	if *kernel == "" || *modules == "" || *inst == "" {
		return errors.New("usage: ironbark pxe setup --kernel VMLINUZ --modules DIR --installer BIN [--data-dir DIR]")
	}
	l := pxe.Layout{DataDir: rf.dataDir}
	if err := l.InstallBootFiles(*kernel, *inst, *modules); err != nil {
		return err
	}
	fmt.Printf("installer kernel and initramfs installed in %s\n", l.BootDir())
	return nil
}

func runPXEImage(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("pxe image", flag.ContinueOnError)
	var rf storeFlags
	rf.add(fs)
	pos, err := parseArgs(fs, args, 2, "usage: ironbark pxe image APPLIANCE FILE [--data-dir DIR]")
	if err != nil {
		return err
	}
	db, l, err := pxeDB(ctx, rf)
	if err != nil {
		return err
	}
	defer db.Close()
	blobs, err := l.Blobs()
	if err != nil {
		return err
	}
	d, size, err := (&pxe.BlobImages{DB: db, Blobs: blobs}).Set(ctx, pos[0], pos[1])
	if err != nil {
		return err
	}
	fmt.Printf("appliance %s installs %s (%d bytes)\n", pos[0], d, size)
	return nil
}

func runDiscover(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("discover", flag.ContinueOnError)
	var rf storeFlags
	rf.add(fs)
	appliance := fs.String("appliance", "compute", "appliance of the discovered nodes")
	clusterName := fs.String("cluster", "", "cluster the nodes join (required)")
	rack := fs.Int("rack", 0, "rack number in the names <appliance>-<rack>-<rank>")
	noTUI := fs.Bool("no-tui", false, "print one line per discovered node instead of the screen")
	if _, err := parseArgs(fs, args, 0, "usage: ironbark "+fs.Name()+" [flags]: no arguments"); err != nil {
		return err
	}
	if *clusterName == "" {
		return errors.New("usage: ironbark discover --appliance compute --cluster NAME [--rack R] [--no-tui] [--data-dir DIR]")
	}
	db, _, err := pxeDB(ctx, rf)
	if err != nil {
		return err
	}
	defer db.Close()
	hosts := pxe.NewHosts(db)
	disc := pxe.NewDiscovery(db, hosts)
	sess, err := disc.Start(ctx, *appliance, *clusterName, *rack)
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
		t := time.NewTicker(pxe.StaleAfter / 5)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if err := disc.Beat(ctx, sess); err != nil && ctx.Err() == nil {
					cancel(err)
					return
				}
			}
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
	if *noTUI {
		fmt.Printf("discovering %s appliances for cluster %s, rack %d; interrupt to end\n", sess.Appliance, sess.Cluster, sess.Rack)
		seen := map[string]bool{}
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		for {
			nodes, err := poll(ctx)
			if err != nil && ctx.Err() == nil {
				return err
			}
			for _, n := range nodes {
				if !seen[n.Name] && n.IP != "" {
					seen[n.Name] = true
					fmt.Printf("discovered %s mac=%s ip=%s\n", n.Name, n.MAC, n.IP)
				}
			}
			select {
			case <-ctx.Done():
				if c := context.Cause(ctx); c != nil && !errors.Is(c, context.Canceled) {
					return c
				}
				fmt.Printf("discovery ended: %d node(s) discovered\n", len(seen))
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
	fmt.Printf("discovery ended: %d node(s) discovered\n", len(screen.Nodes()))
	for _, n := range screen.Nodes() {
		fmt.Printf("discovered %s mac=%s ip=%s\n", n.Name, n.MAC, n.IP)
	}
	return nil
}

func runHostList(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("host list", flag.ContinueOnError)
	var rf storeFlags
	rf.add(fs)
	if _, err := parseArgs(fs, args, 0, "usage: ironbark "+fs.Name()+" [flags]: no arguments"); err != nil {
		return err
	}
	db, _, err := pxeDB(ctx, rf)
	if err != nil {
		return err
	}
	defer db.Close()
	hs, err := pxe.NewHosts(db).List(ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tMAC\tIP\tAPPLIANCE\tRACK\tRANK\tCLUSTER\tBOOT\tINSTALL")
	for _, h := range hs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\n", h.Name, h.MAC, dash(h.IP), h.Appliance, h.Rack, h.Rank,
			dash(h.Cluster), h.Boot, h.Status())
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func runHostAdd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("host add", flag.ContinueOnError)
	var rf storeFlags
	rf.add(fs)
	mac := fs.String("mac", "", "MAC address (required)")
	appliance := fs.String("appliance", "compute", "appliance")
	rack := fs.Int("rack", 0, "rack")
	rank := fs.Int("rank", -1, "rank (default: next free in the rack)")
	ip := fs.String("ip", "", "static IPv4 address (default: from the pool at first boot)")
	clusterName := fs.String("cluster", "", "cluster")
	boot := fs.String("boot", "install", "boot action: install, os or rescue")
	pos, err := parseWithArgs(fs, args)
	if err != nil {
		return err
	}
	if *mac == "" || len(pos) > 1 {
		return errors.New("usage: ironbark host add --mac MAC [--appliance A] [--rack R] [--rank N] [--ip IP] [--cluster C] [--boot ACTION] [NAME]")
	}
	action, err := pxe.ParseBootAction(*boot)
	if err != nil {
		return err
	}
	name := ""
	if len(pos) == 1 {
		name = pos[0]
	}
	db, _, err := pxeDB(ctx, rf)
	if err != nil {
		return err
	}
	defer db.Close()
	h, err := pxe.NewHosts(db).Add(ctx, pxe.AddHost{Name: name, MAC: *mac, IP: *ip, Appliance: *appliance,
		Rack: *rack, Rank: *rank, Cluster: *clusterName, Boot: action})
	if err != nil {
		return err
	}
	fmt.Printf("added %s mac=%s ip=%s boot=%s\n", h.Name, h.MAC, dash(h.IP), h.Boot)
	return nil
}

func runHostRemove(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("host remove", flag.ContinueOnError)
	var rf storeFlags
	rf.add(fs)
	pos, err := parseArgs(fs, args, 1, "usage: ironbark host remove HOST [--data-dir DIR]")
	if err != nil {
		return err
	}
	db, _, err := pxeDB(ctx, rf)
	if err != nil {
		return err
	}
	defer db.Close()
	hosts := pxe.NewHosts(db)
	h, err := hosts.Get(ctx, pos[0])
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
	leases, err := dhcp.NewLeaseStore(ctx, db, dhcp.LeaseStoreConfig{})
	if err != nil {
		return err
	}
	mac, err := net.ParseMAC(h.MAC)
	if err != nil {
		return err
	}
	if err := leases.Forget(ctx, mac); err != nil {
		return err
	}
	fmt.Printf("removed %s (%s)\n", h.Name, h.MAC)
	return nil
}

func runHostSetBoot(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("host set-boot", flag.ContinueOnError)
	var rf storeFlags
	rf.add(fs)
	pos, err := parseArgs(fs, args, 2, "usage: ironbark host set-boot HOST install|os|rescue [--data-dir DIR]")
	if err != nil {
		return err
	}
	action, err := pxe.ParseBootAction(pos[1])
	if err != nil {
		return err
	}
	db, _, err := pxeDB(ctx, rf)
	if err != nil {
		return err
	}
	defer db.Close()
	if err := pxe.NewHosts(db).SetBoot(ctx, pos[0], action); err != nil {
		return err
	}
	fmt.Printf("%s will boot %s next\n", pos[0], action)
	return nil
}
