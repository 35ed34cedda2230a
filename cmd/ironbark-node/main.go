// Command ironbark-node is the node agent: it enrolls with the cloud
// controller and runs instances as libvirt domains. It links libvirt (cgo).
//
//	ironbark-node --controller https://HOST:8774 --token-file FILE \
//	    --libvirt qemu:///system --state-dir /var/lib/ironbark-node [--bridge br0]
//
// On an installed node the controller, token and host name come from the
// identity file the installer wrote (--identity, default
// /boot/efi/ironbark/node.json, JSON as in docs/node-api.md); flags on the
// command line win. The token is read from a file or stdin (--token-file -)
// so that it never shows in ps.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"ironbark/internal/nodeapi"
	"ironbark/nodeagent"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdin)
	stop()
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "ironbark-node: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdin io.Reader) error {
	fs := flag.NewFlagSet("ironbark-node", flag.ContinueOnError)
	var cfg nodeagent.Config
	identity := fs.String("identity", nodeapi.DefaultIdentityPath, "the node identity the installer wrote (JSON); ignored when missing")
	fs.StringVar(&cfg.Controller, "controller", "", "the controller's node API, https://HOST:8774")
	tokenFile := fs.String("token-file", "", "file holding the one-time enrollment token, - for stdin (ironbark node token --cluster NAME); only needed until enrolled")
	fs.StringVar(&cfg.Token, "token", "", "the enrollment token itself (visible in ps: prefer --token-file)")
	fs.StringVar(&cfg.LibvirtURI, "libvirt", "qemu:///system", "libvirt URI: xen:///system, qemu:///system or test:///default")
	fs.StringVar(&cfg.StateDir, "state-dir", "/var/lib/ironbark-node", "node state: certificate, image cache, instance disks")
	fs.StringVar(&cfg.Bridge, "bridge", "", "cluster bridge the instances' NICs join (none when empty)")
	instanceServices := fs.Bool("instance-services", true, "serve DHCP and the metadata service (169.254.169.254) to the instances on --bridge")
	securityGroups := fs.Bool("security-groups", true, "enforce the instances' security groups on --bridge (nftables table inet ironbark-sg-BRIDGE)")
	fs.StringVar(&cfg.DomainType, "domain-type", "qemu", "for qemu:// URIs: qemu (TCG) or kvm (only where /dev/kvm works)")
	fs.StringVar(&cfg.Hostname, "hostname", "", "name reported to the controller (default: the host name)")
	fs.DurationVar(&cfg.StopTimeout, "stop-timeout", 0, "time a stopping guest gets to power off (default 30s)")
	fs.StringVar(&cfg.XenConsoleDir, "xen-console-dir", "/var/log/xen/console", "xen:// only: where xenconsoled --log=guest writes guest-NAME.log, read for GetConsoleOutput")
	fs.IntVar(&cfg.MaxCores, "max-cores", 0, "cores to offer instead of the host's (Eucalyptus MAX_CORES; may overcommit)")
	fs.IntVar(&cfg.MaxMemoryMiB, "max-memory-mib", 0, "memory to offer instead of the host's, MiB")
	fs.IntVar(&cfg.MaxDiskGiB, "max-disk-gib", 0, "disk to offer instead of the state dir's file system size, GiB")
	fs.StringVar(&cfg.PublicInterface, "public-interface", "", "the node's public side: elastic IPs go on it (none: the network routes the public pool to the node)")
	fs.BoolVar(&cfg.OutboundNAT, "outbound-nat", false, "masquerade instances without a public address out of --public-interface")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *tokenFile != "" {
		tok, err := readToken(*tokenFile, stdin)
		if err != nil {
			return err
		}
		cfg.Token = tok
	}
	if *identity != "" {
		if _, err := os.Stat(*identity); err == nil {
			cfg.IdentityFile = *identity
		} else if set(fs, "identity") {
			return fmt.Errorf("--identity: %w", err)
		}
	}
	cfg.NoInstanceServices = !*instanceServices
	cfg.NoSecurityGroups = !*securityGroups
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
	a, err := nodeagent.New(cfg)
	if err != nil {
		return err
	}
	return a.Run(ctx)
}

// readToken reads the enrollment token from a file, or from stdin for "-".
func readToken(path string, stdin io.Reader) (string, error) {
	var b []byte
	var err error
	if path == "-" {
		b, err = io.ReadAll(io.LimitReader(stdin, 4096))
	} else {
		b, err = os.ReadFile(path)
	}
	if err != nil {
		return "", fmt.Errorf("--token-file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if _, _, err := nodeapi.ParseToken(tok); err != nil {
		return "", fmt.Errorf("--token-file %s: %w", path, err)
	}
	return tok, nil
}

func set(fs *flag.FlagSet, name string) bool {
	found := false
	fs.Visit(func(f *flag.Flag) { found = found || f.Name == name })
	return found
}
