// Command ironbark-node is the node agent: it enrolls with the cloud
// controller and runs instances as libvirt domains. It links libvirt (cgo).
//
//	ironbark-node --controller https://HOST:8774 --token TOKEN \
//	    --libvirt qemu:///system --state-dir /var/lib/ironbark-node [--bridge br0]
//
// The same keys can come from a config file (--config, "key = value"
// lines), as the node installer writes it; flags on the command line win.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"ironbark/nodeagent"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "ironbark-node: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("ironbark-node", flag.ContinueOnError)
	var cfg nodeagent.Config
	config := fs.String("config", "", "config file with the same keys as the flags (key = value)")
	fs.StringVar(&cfg.Controller, "controller", "", "the controller's node API, https://HOST:8774")
	fs.StringVar(&cfg.Token, "token", "", "one-time enrollment token (ironbark node token --cluster NAME); only needed until enrolled")
	fs.StringVar(&cfg.LibvirtURI, "libvirt", "qemu:///system", "libvirt URI: xen:///system, qemu:///system or test:///default")
	fs.StringVar(&cfg.StateDir, "state-dir", "/var/lib/ironbark-node", "node state: certificate, image cache, instance disks")
	fs.StringVar(&cfg.Bridge, "bridge", "", "cluster bridge the instances' NICs join (none when empty)")
	instanceServices := fs.Bool("instance-services", true, "serve DHCP and the metadata service (169.254.169.254) to the instances on --bridge")
	fs.StringVar(&cfg.DomainType, "domain-type", "qemu", "for qemu:// URIs: qemu (TCG) or kvm (only where /dev/kvm works)")
	fs.StringVar(&cfg.Hostname, "hostname", "", "name reported to the controller (default: the host name)")
	fs.DurationVar(&cfg.StopTimeout, "stop-timeout", 0, "time a stopping guest gets to power off (default 30s)")
	fs.StringVar(&cfg.XenConsoleDir, "xen-console-dir", "/var/log/xen/console", "xen:// only: where xenconsoled --log=guest writes guest-NAME.log, read for GetConsoleOutput")
	fs.IntVar(&cfg.MaxCores, "max-cores", 0, "cores to offer instead of the host's (Eucalyptus MAX_CORES; may overcommit)")
	fs.IntVar(&cfg.MaxMemoryMiB, "max-memory-mib", 0, "memory to offer instead of the host's, MiB")
	fs.IntVar(&cfg.MaxDiskGiB, "max-disk-gib", 0, "disk to offer instead of the state dir's file system size, GiB")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *config != "" {
		if err := applyConfigFile(fs, *config); err != nil {
			return err
		}
	}
	cfg.NoInstanceServices = !*instanceServices
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
	if cfg.Controller == "" {
		return errors.New("--controller is required (https://FRONTEND:8774)")
	}
	a, err := nodeagent.New(cfg)
	if err != nil {
		return err
	}
	return a.Run(ctx)
}

// applyConfigFile sets every flag the file names that the command line did
// not.
func applyConfigFile(fs *flag.FlagSet, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	kv, err := nodeagent.ParseConfigFile(f)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	for k, v := range kv {
		if k == "config" || set[k] {
			continue
		}
		if fs.Lookup(k) == nil {
			return fmt.Errorf("%s: unknown key %q", path, k)
		}
		if err := fs.Set(k, v); err != nil {
			return fmt.Errorf("%s: %s: %w", path, k, err)
		}
	}
	return nil
}
