package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"ironbark/installer/frontend"
	"ironbark/tui"
)

// frontendInstall is `ironbark install`: the frontend installer,
// unattended with --answers (the screens run it from the ISO).
func frontendInstall(fs *flag.FlagSet) runFunc {
	answers := fs.String("answers", "", "answer file (YAML, version 1; see docs/answers.md)")
	image := fs.String("image", frontend.DefaultImage, "the frontend appliance disk image (raw or zstd)")
	rolls := fs.String("rolls", "", "directory of the rolls on the medium (the answers' rolls must be there)")
	check := fs.Bool("check", false, "check the answers against this machine and print the plan; write nothing")
	diskFile := fs.String("disk-file", "", "also offer this disk image file as a target disk (install into an image)")
	save := fs.String("save", "", "where the summary screen's `s` saves the answers (default: ./answers.yaml)")
	logFile := fs.String("log", "", "with the screens: also write the install log to this file (the failure screen shows its tail)")
	return func(ctx context.Context, e *env) error {
		var m frontend.Machine = frontend.SysMachine{}
		if *diskFile != "" {
			m = frontend.WithDiskFiles(m, *diskFile)
		}
		md := frontend.Medium{Image: frontend.Image{Path: *image}, RollsDir: *rolls}
		if *answers == "" {
			if *save == "" {
				*save = "answers.yaml"
			}
			var log io.Writer = io.Discard
			if *logFile != "" {
				f, err := os.OpenFile(*logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
				if err != nil {
					return fmt.Errorf("install: %w", err)
				}
				defer f.Close()
				log = f
			}
			a, err := tui.RunInstaller(ctx, os.Stdin, e.stdout, m, md, *save, log)
			if err != nil {
				return fmt.Errorf("install: %w", err)
			}
			e.say("frontend %s installed on %s; reboot into it", a.Cluster.FQDN, a.Disk.Device)
			return nil
		}
		b, err := os.ReadFile(*answers)
		if err != nil {
			return fmt.Errorf("install: %w", err)
		}
		a, err := frontend.Parse(b)
		if err != nil {
			return fmt.Errorf("install: %s: %w", *answers, err)
		}
		if *check {
			p, err := frontend.Check(a, m, md)
			if err != nil {
				return fmt.Errorf("install: %s: %w", *answers, err)
			}
			fmt.Fprintf(e.stdout, "answers %s are good; the install would run:\n", *answers)
			for i, s := range p.Steps {
				fmt.Fprintf(e.stdout, "  %d. %s\n", i+1, s)
			}
			return nil
		}
		if err := frontend.Install(ctx, a, m, md, e.logger(0), progressPrinter(e.stderr)); err != nil {
			return fmt.Errorf("install: %w", err)
		}
		e.say("frontend %s installed on %s; reboot into it", a.Cluster.FQDN, a.Disk.Device)
		return nil
	}
}

// progressPrinter prints a line per step and per 10% of a long step.
func progressPrinter(w io.Writer) func(frontend.Progress) {
	lastPct := -1
	return func(p frontend.Progress) {
		if p.Finished {
			return
		}
		if p.Total == 0 {
			lastPct = -1
			fmt.Fprintf(w, "install: step %d/%d %s\n", p.Index, p.Of, p.Step)
			return
		}
		pct := int(100 * p.Done / p.Total)
		if pct/10 == lastPct/10 && pct != 100 {
			return
		}
		lastPct = pct
		fmt.Fprintf(w, "install: step %d/%d %s: %d of %d MiB (%d%%), %.0f MiB/s, ETA %s\n", p.Index, p.Of, p.Step,
			p.Done>>20, p.Total>>20, pct, p.Rate/(1<<20), p.ETA.Round(time.Second))
	}
}

// frontendSetup is `ironbark frontend setup`: the installed frontend's
// boot makes the system what the installer's answers said.
func frontendSetup(fs *flag.FlagSet) runFunc {
	root := fs.String("root", "/", "the system to set up (another directory writes its files there and sets no host name)")
	return func(ctx context.Context, e *env) error {
		c, err := frontend.LoadConfig(e.dataDir)
		if err != nil {
			return err
		}
		if err := frontend.ApplySystem(*root, c, e.logger(slog.LevelInfo)); err != nil {
			return err
		}
		if *root == "/" {
			if err := c.SetHostname(); err != nil {
				return err
			}
		}
		e.say("frontend %s set up: public %s %s, cluster %s on %s %s", c.FQDN, c.Public.Interface, publicAddr(c),
			c.Clusters[0].Name, c.Clusters[0].PXEInterface, c.Clusters[0].Address)
		return nil
	}
}

func publicAddr(c frontend.Config) string {
	if c.Public.DHCP {
		return "dhcp"
	}
	return c.Public.Address
}
