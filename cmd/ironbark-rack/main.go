// Command ironbark-rack (`make rack`) brings up a whole rack on this
// machine: the ISO, a lab network, the frontend installed from the ISO,
// compute machines that PXE-install from it and enroll, the eucarc, and a
// live status line until Ctrl-C, which removes everything it made. It is
// a lab tool for the developer's machine, not part of a frontend; the
// steps are package internal/lab/rack.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"ironbark/internal/lab/rack"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	switch {
	case errors.Is(err, flag.ErrHelp):
		os.Exit(0)
	case errors.As(err, new(usageError)):
		fmt.Fprintln(os.Stderr, "ironbark-rack:", err)
		os.Exit(2)
	case err != nil:
		fmt.Fprintln(os.Stderr, "ironbark-rack:", err)
		os.Exit(1)
	}
}

type usageError struct{ error }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("ironbark-rack", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg rack.Config
	fs.IntVar(&cfg.Nodes, "nodes", 2, "blank compute machines to power on (each a Xen host in qemu: 3 GiB of memory)")
	public := fs.String("public", "", "the host's side of the frontend's public network, a /24 (the frontend takes .10; default: the first of 192.0.2.1/24, 198.51.100.1/24, 203.0.113.1/24 that this machine does not reach already)")
	fs.StringVar(&cfg.Cache, "cache", "", "cache of binaries, images, the ISO and the installed frontend disk (default /var/cache/ironbark-lab/rack)")
	fs.BoolVar(&cfg.Instance, "instance", true, "run an instance on a node with the AWS CLI (step 5)")
	fs.BoolVar(&cfg.Check, "check", false, "exit once every step is checked, instead of staying up until Ctrl-C")
	fs.BoolVar(&cfg.LabFrontend, "lab-frontend", false, "put the lab frontend image on the ISO (busybox, minutes faster to build) instead of the frontend appliance")
	inNS := fs.Bool("netns-only", false, "keep the public network inside the lab namespace (no address on this host; prefix the AWS CLI with ip netns exec)")
	verbose := fs.Bool("v", false, "log every lab action")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: ironbark-rack [flags]\n\nA whole rack on this machine (run from the source tree, as root); Ctrl-C removes it.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected arguments %q", fs.Args())}
	}
	if *public != "" {
		p, err := netip.ParsePrefix(*public)
		if err != nil {
			return usageError{fmt.Errorf("--public: %w", err)}
		}
		cfg.Public = p
	}
	cfg.HostRoute = !*inNS
	if os.Geteuid() != 0 {
		return errors.New("needs root (namespaces, bridges, taps)")
	}
	root, err := sourceRoot()
	if err != nil {
		return err
	}
	cfg.Root = root
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelDebug
	}
	cfg.Log = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	cfg.Out = stdout
	_, err = rack.Run(ctx, cfg)
	if err != nil && ctx.Err() != nil {
		fmt.Fprintln(stdout, "rack: interrupted:", err)
		return nil // Ctrl-C during a step: everything is removed, as asked
	}
	return err
}

// sourceRoot finds the source tree (go.mod) from the working directory up.
func sourceRoot() (string, error) {
	d, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		p := filepath.Dir(d)
		if p == d {
			return "", errors.New("run it from the ironbark source tree (no go.mod here or above)")
		}
		d = p
	}
}
