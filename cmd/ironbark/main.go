// Command ironbark is the frontend binary: cloud controller, PXE
// provisioning, image tools and host management, one subcommand each.
// It is pure Go; the node agent is the separate cgo binary ironbark-node.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
)

// command is one subcommand. Groups of them live in cmd_*.go, one file per
// domain, so each domain's flags stay next to each other.
type command struct {
	name    string // "controller", "account create", ...
	summary string
	run     func(ctx context.Context, args []string) error
}

func commands() []command {
	var cs []command
	cs = append(cs, controllerCommands()...)
	cs = append(cs, nodeCommands()...)
	cs = append(cs, imageCommands()...)
	cs = append(cs, pxeCommands()...)
	cs = append(cs, installCommands()...)
	return cs
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := dispatch(ctx, commands(), os.Args[1:])
	stop()
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "ironbark: %v\n", err)
		os.Exit(1)
	}
}

// dispatch finds the longest command name that prefixes args.
func dispatch(ctx context.Context, cs []command, args []string) error {
	var best *command
	bestLen := 0
	for i := range cs {
		words := strings.Fields(cs[i].name)
		if len(words) <= len(args) && len(words) > bestLen && equalWords(words, args[:len(words)]) {
			best, bestLen = &cs[i], len(words)
		}
	}
	if best == nil {
		usage(cs)
		if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
			return nil
		}
		return fmt.Errorf("unknown command %q", strings.Join(args, " "))
	}
	return best.run(ctx, args[bestLen:])
}

func equalWords(a, b []string) bool {
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func usage(cs []command) {
	sort.Slice(cs, func(i, j int) bool { return cs[i].name < cs[j].name })
	fmt.Fprintln(os.Stderr, "usage: ironbark COMMAND [flags]\n\ncommands:")
	for _, c := range cs {
		fmt.Fprintf(os.Stderr, "  %-22s %s\n", c.name, c.summary)
	}
}

// defaultDataDir is where a frontend keeps its state.
const defaultDataDir = "/var/lib/ironbark"
