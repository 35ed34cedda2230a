package pxe

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"golang.org/x/sync/errgroup"

	"ironbark/internal/store"
	"ironbark/pxe/dhcp"
	"ironbark/pxe/leases"
)

// ServiceConfig configures the PXE service of one interface.
type ServiceConfig struct {
	DB        *store.DB
	Layout    Layout
	Interface string
	// Subnet served; zero means the interface's own.
	Subnet netip.Prefix
	// HTTPPort of the boot server (default 8080), on the interface address.
	HTTPPort int
	// TFTPDir holds undionly.kpxe, snponly.efi and ipxe.efi (default
	// /usr/lib/ipxe, Debian's ipxe package).
	TFTPDir    string
	KernelArgs string // extra installer kernel args, e.g. console=ttyS0
	OnFail     string // installer's action after a failed install
	Finish     string // after a good install: bootapi.FinishKexec or FinishReboot ("" = reboot)
	Identity   IdentityIssuer
	// Keys gives root's SSH keys on each installed host (AttrKeys: the
	// ssh_authorized_keys attribute); nil gives none.
	Keys KeySource
	Log  *slog.Logger
	// Ready, when set, is called once every listener is up.
	Ready func(baseURL string)
}

// GCPercent is the garbage collector's GOGC that `ironbark pxe serve` sets
// (debug.SetGCPercent) unless GOGC is in its environment. The service's
// live heap is small (the lease index is about 200 bytes a lease) while
// every DHCP exchange allocates about 10 KB in parsing and marshalling:
// at Go's default of 100 the collector ran many times a second under a
// burst of clients, and its CPU and pauses (a pause waits for every
// thread, so a thread the kernel has parked on a busy machine holds up
// all) made a tenth of a DHCP exchange's cost. At 400 the heap may grow
// to five times what is live: a few tens of MiB.
const GCPercent = 400

// InterfaceAddr returns the first IPv4 address of an interface and its
// subnet.
func InterfaceAddr(name string) (netip.Addr, netip.Prefix, error) {
	ifc, err := net.InterfaceByName(name)
	if err != nil {
		return netip.Addr{}, netip.Prefix{}, fmt.Errorf("interface %s: %w", name, err)
	}
	addrs, err := ifc.Addrs()
	if err != nil {
		return netip.Addr{}, netip.Prefix{}, fmt.Errorf("addresses of %s: %w", name, err)
	}
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok || ipn.IP.To4() == nil {
			continue
		}
		ip, _ := netip.AddrFromSlice(ipn.IP.To4())
		ones, _ := ipn.Mask.Size()
		return ip, netip.PrefixFrom(ip, ones).Masked(), nil
	}
	return netip.Addr{}, netip.Prefix{}, fmt.Errorf("interface %s has no IPv4 address", name)
}

// RunService runs DHCP, TFTP, router advertisements and HTTP boot on one
// interface until ctx ends.
func RunService(ctx context.Context, cfg ServiceConfig) error {
	log := cfg.Log
	if log == nil {
		log = slog.Default()
	}
	ip, subnet, err := InterfaceAddr(cfg.Interface)
	if err != nil {
		return err
	}
	if cfg.Subnet.IsValid() {
		if !cfg.Subnet.Contains(ip) {
			return fmt.Errorf("subnet %s does not contain %s's address %s", cfg.Subnet, cfg.Interface, ip)
		}
		subnet = cfg.Subnet.Masked()
	}
	if cfg.HTTPPort == 0 {
		cfg.HTTPPort = 8080
	}
	if cfg.TFTPDir == "" {
		cfg.TFTPDir = "/usr/lib/ipxe"
	}
	if err := cfg.DB.Migrate(ctx, Migrations()); err != nil {
		return err
	}
	pool, err := dhcp.PoolFor(subnet)
	if err != nil {
		return err
	}
	ls, err := leases.New(ctx, cfg.DB, leases.Config{Pool: pool})
	if err != nil {
		return err
	}
	defer ls.Close()
	blobs, err := cfg.Layout.Blobs()
	if err != nil {
		return err
	}
	hosts := NewHosts(cfg.DB)
	disc := NewDiscovery(cfg.DB, hosts)
	base := "http://" + net.JoinHostPort(ip.String(), strconv.Itoa(cfg.HTTPPort))
	boot := &HTTPBoot{
		Script:    ScriptConfig{BaseURL: base, KernelArgs: cfg.KernelArgs, OnFail: cfg.OnFail, Finish: cfg.Finish},
		Hosts:     hosts,
		Discovery: disc,
		BootDir:   cfg.Layout.BootDir(),
		Images:    &BlobImages{DB: cfg.DB, Blobs: blobs},
		Identity:  cfg.Identity,
		Keys:      cfg.Keys,
		Log:       log.With("part", "http"),
	}
	if boot.Identity == nil {
		boot.Identity = StaticIdentity{}
	}
	uefiFile := "snponly.efi"
	if _, err := os.Stat(filepath.Join(cfg.TFTPDir, uefiFile)); err != nil {
		uefiFile = "ipxe.efi"
	}
	dsrv, err := dhcp.New(dhcp.Config{
		Interface: cfg.Interface, ServerIP: ip, Subnet: subnet,
		BIOSBootFile: "undionly.kpxe", UEFIBootFile: uefiFile,
		Logger: log.With("part", "dhcp"),
	}, &DHCPBackend{Hosts: hosts, Discovery: disc, Leases: ls, BaseURL: base, Log: log.With("part", "dhcp")}, ls)
	if err != nil {
		return err
	}
	extras, err := extraServices(cfg, ip, log)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(ip.String(), strconv.Itoa(cfg.HTTPPort)))
	if err != nil {
		return fmt.Errorf("http boot: %w", err)
	}
	hsrv := &http.Server{Handler: boot.Handler(), ReadHeaderTimeout: 30 * time.Second}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		err := hsrv.Serve(ln)
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return fmt.Errorf("http boot: %w", err)
	})
	g.Go(func() error {
		<-gctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return hsrv.Shutdown(sctx)
	})
	g.Go(func() error { return dsrv.Serve(gctx) })
	for _, extra := range extras {
		g.Go(func() error { return extra(gctx) })
	}
	for _, f := range []string{"vmlinuz", "installer.img"} {
		if _, err := os.Stat(filepath.Join(cfg.Layout.BootDir(), f)); err != nil {
			log.Warn("installer boot file missing: nodes cannot install until `ironbark pxe setup` installs it", "file", f, "dir", cfg.Layout.BootDir())
		}
	}
	log.Info("pxe serving", "iface", cfg.Interface, "addr", ip, "subnet", subnet,
		"pool", fmt.Sprintf("%s-%s", pool.Start, pool.End), "http", base)
	if cfg.Ready != nil {
		cfg.Ready(base)
	}
	return g.Wait()
}
