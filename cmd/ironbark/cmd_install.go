package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"time"

	"ironbark/installer/frontend"
)

// installCommands: the frontend installer (unattended with --answers).
func installCommands() []command {
	return []command{
		{name: "install", summary: "install this machine as the frontend: install --answers FILE --image IMG [--rolls DIR] [--check]", run: runInstall},
	}
}

func runInstall(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("install", flag.ContinueOnError)
	answers := fs.String("answers", "", "answer file (YAML, version 1); see docs/answers.md")
	image := fs.String("image", frontend.DefaultImage, "the frontend appliance disk image (raw or zstd)")
	rolls := fs.String("rolls", "", "directory of the rolls on the medium (the answers' rolls must be there)")
	check := fs.Bool("check", false, "check the answers against this machine and print the plan; write nothing")
	if _, err := parseArgs(fs, args, 0, "usage: ironbark install --answers FILE [--image IMG] [--rolls DIR] [--check]"); err != nil {
		return err
	}
	if *answers == "" {
		return errors.New("install: --answers FILE is required (the screens run from the ISO's installer)")
	}
	b, err := os.ReadFile(*answers)
	if err != nil {
		return fmt.Errorf("install: %w", err)
	}
	a, err := frontend.Parse(b)
	if err != nil {
		return fmt.Errorf("install: %s: %w", *answers, err)
	}
	md := frontend.Medium{Image: frontend.Image{Path: *image}, RollsDir: *rolls}
	m := frontend.SysMachine{}
	if *check {
		p, err := frontend.Check(a, m, md)
		if err != nil {
			return fmt.Errorf("install: %s: %w", *answers, err)
		}
		fmt.Printf("answers %s are good; the install would run:\n", *answers)
		for i, s := range p.Steps {
			fmt.Printf("  %d. %s\n", i+1, s)
		}
		return nil
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := frontend.Install(ctx, a, m, md, log, progressPrinter(os.Stderr)); err != nil {
		return fmt.Errorf("install: %w", err)
	}
	fmt.Printf("frontend %s installed on %s; reboot into it\n", a.Cluster.FQDN, a.Disk.Device)
	return nil
}

// progressPrinter prints a line per step and per 10% of a long step.
func progressPrinter(w *os.File) func(frontend.Progress) {
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
