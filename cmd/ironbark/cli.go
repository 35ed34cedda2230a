package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"text/tabwriter"

	"ironbark/controller"
	"ironbark/internal/datadir"
	"ironbark/internal/store"
)

// command is one entry of the command table (commands.go).
type command struct {
	// name is "<noun> <verb>" ("host add"), or one word for a daemon or a
	// whole-machine action ("controller", "discover").
	name string
	// args are the positional arguments as the usage line shows them. The
	// count is checked from it before run: "NAME" is required, "[NAME]"
	// optional, "FILE..." one or more.
	args string
	// help is one line for the command list; a longer text may follow on
	// the next lines, shown by `ironbark help NAME` and -h.
	help string
	// noStore is set for commands that only work on files (image build,
	// iso build): they get no --data-dir and --db.
	noStore bool
	// audit marks a command that changes state: each run is recorded in
	// the audit log as the account "admin (cli)" (cmd_audit.go).
	audit bool
	// setup declares the command's own flags on fs and returns the
	// function that runs it with their parsed values.
	setup func(fs *flag.FlagSet) runFunc
}

// runFunc runs a command after its flags and arguments are parsed.
type runFunc func(ctx context.Context, e *env) error

// env is what a command runs with: its arguments, where data and
// messages go, and the frontend's data dir and store.
type env struct {
	args   []string  // positional arguments, count already checked
	stdout io.Writer // data: lists, ids, tokens
	stderr io.Writer // everything else: messages, logs, usage
	json   bool      // --json: list and show commands print JSON
	// dataDir is the frontend data directory (--data-dir) and db the
	// store URL given with --db ("" when the command has noStore).
	dataDir, db string
	cmd         *command
	closers     []func() error // what the command opened, closed after it
}

// openStore opens the data dir's store (the URL --db gives, else the one
// the controller remembered, else SQLite in the data dir) and applies
// the migrations ms. It is closed when the command returns.
func (e *env) openStore(ctx context.Context, ms []store.Migration) (*store.DB, error) {
	url, err := controller.StoreURL(e.dataDir, e.db)
	if err != nil {
		return nil, err
	}
	db, err := store.Open(ctx, url)
	if err != nil {
		return nil, err
	}
	e.closers = append(e.closers, db.Close)
	db.UseKeyFile(e.dir().SecretKey())
	if err := db.Migrate(ctx, ms); err != nil {
		return nil, err
	}
	return db, nil
}

// close closes what the command opened, last first.
func (e *env) close() error {
	var errs []error
	for _, c := range slices.Backward(e.closers) {
		errs = append(errs, c())
	}
	e.closers = nil
	return errors.Join(errs...)
}

// dir is the data directory's layout.
func (e *env) dir() datadir.Dir { return datadir.Dir(e.dataDir) }

// say prints a message for the user on stderr (not data).
func (e *env) say(format string, a ...any) {
	fmt.Fprintf(e.stderr, format+"\n", a...)
}

// logger is the structured log of a long-running command, on stderr.
func (e *env) logger(level slog.Level) *slog.Logger {
	return slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: level}))
}

// usageError is a command line that cannot be run: exit status 2.
type usageError struct{ msg string }

func (u usageError) Error() string { return u.msg }

// usagef reports a wrong command line of this command.
func (e *env) usagef(format string, a ...any) error {
	return usageError{fmt.Sprintf(format, a...) + "\nusage: " + e.cmd.usageLine()}
}

// tableRow is a row type of a list command: its json tags are the
// stable --json shape, cells its table line.
type tableRow interface{ cells() []string }

// printList writes rows as a table under heads, or with --json as a JSON
// array of the rows.
func printList[T tableRow](e *env, heads []string, rows []T) error {
	if e.json {
		if rows == nil {
			rows = []T{}
		}
		return printJSON(e.stdout, rows)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(heads, "\t"))
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r.cells(), "\t"))
	}
	return tw.Flush()
}

// printJSON writes v indented, one value per invocation.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// usageLine is "ironbark NAME [flags] ARGS".
func (c *command) usageLine() string {
	s := "ironbark " + c.name + " [flags]"
	if c.args != "" {
		s += " " + c.args
	}
	return s
}

// summary is the first line of help.
func (c *command) summary() string {
	s, _, _ := strings.Cut(c.help, "\n")
	return s
}

// showsData reports whether the command lists or shows things, so it
// takes --json.
func (c *command) showsData() bool {
	verb := c.name[strings.LastIndex(c.name, " ")+1:] // "address pool list": list
	return verb == "list" || verb == "show"
}

// arity is how many positional arguments args allows; max -1 is no limit.
func (c *command) arity() (min, max int) {
	depth := 0
	for _, w := range strings.Fields(c.args) {
		optional := depth > 0 || strings.HasPrefix(w, "[")
		depth += strings.Count(w, "[") - strings.Count(w, "]")
		if strings.HasSuffix(strings.TrimRight(w, "]"), "...") {
			max = -1
		} else if max >= 0 {
			max++
		}
		if !optional {
			min++
		}
	}
	return min, max
}

// flagSet builds the command's flags: the shared ones, then its own.
func (c *command) flagSet(e *env) (*flag.FlagSet, runFunc) {
	fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	if !c.noStore {
		fs.StringVar(&e.dataDir, "data-dir", string(datadir.Default), "frontend data directory")
		fs.StringVar(&e.db, "db", "", "store URL: postgres://... for PostgreSQL (default: the one the controller remembered in the data dir, else SQLite DATA/ironbark.db)")
	}
	if c.showsData() {
		fs.BoolVar(&e.json, "json", false, "print JSON instead of a table")
	}
	return fs, c.setup(fs)
}

// printHelp writes the command's usage, help text and flags.
func (c *command) printHelp(w io.Writer, all []command) {
	fmt.Fprintf(w, "usage: %s\n\n%s\n", c.usageLine(), c.help)
	fs, _ := c.flagSet(&env{})
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	if n > 0 {
		fmt.Fprintln(w, "\nflags:")
		fs.SetOutput(w)
		fs.PrintDefaults()
	}
	var related []string
	for _, o := range all {
		if strings.HasPrefix(o.name, c.name+" ") {
			related = append(related, o.name)
		}
	}
	if len(related) > 0 {
		fmt.Fprintf(w, "\nsee also: ironbark %s\n", strings.Join(related, ", ironbark "))
	}
}

// parseInterspersed parses flags that may come before, between or after
// the positional arguments and returns the positional ones. After "--"
// everything is positional.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			return append(pos, rest...), nil
		}
		if len(rest) == 0 {
			return pos, nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// parse reads the command's flags and arguments from args into e and
// returns the function that runs it; a wrong command line is a usageError.
func (c *command) parse(e *env, args []string) (runFunc, error) {
	fs, runf := c.flagSet(e)
	pos, err := parseInterspersed(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return nil, err
	}
	if err != nil {
		return nil, usageError{fmt.Sprintf("%s: %v\nusage: %s", c.name, err, c.usageLine())}
	}
	if min, max := c.arity(); len(pos) < min || (max >= 0 && len(pos) > max) {
		return nil, usageError{fmt.Sprintf("%s: wrong number of arguments\nusage: %s", c.name, c.usageLine())}
	}
	e.args = pos
	return runf, nil
}

// run finds the command args name, parses its flags and runs it. The
// error says how the program ends: see exitCode.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cs := commands()
	if len(args) == 0 {
		printUsage(stderr, cs, "")
		return usageError{"no command given"}
	}
	if args[0] == "help" || args[0] == "-h" || args[0] == "--help" || args[0] == "-help" {
		if c, rest := lookup(cs, args[1:]); c != nil && len(rest) == 0 {
			c.printHelp(stderr, cs)
		} else {
			printUsage(stderr, cs, strings.Join(args[1:], " "))
		}
		return flag.ErrHelp
	}
	c, rest := lookup(cs, args)
	if c == nil {
		if printUsage(stderr, cs, args[0]) && len(args) > 1 && isHelp(args[1]) {
			return flag.ErrHelp // "ironbark host -h"
		}
		return usageError{fmt.Sprintf("unknown command %q", strings.Join(args, " "))}
	}
	e := &env{stdout: stdout, stderr: stderr, cmd: c}
	runf, err := c.parse(e, rest)
	if errors.Is(err, flag.ErrHelp) {
		c.printHelp(stderr, cs)
		return err
	}
	if err != nil {
		return err
	}
	if !c.noStore {
		// Whoever makes the data dir first makes it private; one made
		// or loosened by someone else is fixed, and the user told.
		fixed, err := e.dir().Secure()
		for _, f := range fixed {
			e.say("ironbark: %s", f)
		}
		if err != nil {
			return err
		}
	}
	err = runf(ctx, e)
	if c.audit {
		err = recordAdmin(ctx, e, err)
	}
	return errors.Join(err, e.close())
}

func isHelp(a string) bool { return a == "-h" || a == "--help" || a == "-help" || a == "help" }

// lookup finds the command whose name is the longest prefix of args.
func lookup(cs []command, args []string) (*command, []string) {
	var best *command
	n := 0
	for i := range cs {
		words := strings.Fields(cs[i].name)
		if len(words) <= len(args) && len(words) > n && slices.Equal(words, args[:len(words)]) {
			best, n = &cs[i], len(words)
		}
	}
	return best, args[n:]
}

// printUsage lists the commands, only those of noun when it names some,
// and reports whether it did.
func printUsage(w io.Writer, cs []command, noun string) bool {
	cs = slices.Clone(cs)
	slices.SortFunc(cs, func(a, b command) int { return strings.Compare(a.name, b.name) })
	var some []command
	for _, c := range cs {
		if first, _, _ := strings.Cut(c.name, " "); first == noun {
			some = append(some, c)
		}
	}
	found := len(some) > 0
	if found {
		cs = some
	}
	fmt.Fprintln(w, "usage: ironbark COMMAND [flags] [ARGS]\n\ncommands:")
	for _, c := range cs {
		fmt.Fprintf(w, "  %-22s %s\n", c.name, c.summary())
	}
	fmt.Fprintln(w, "\n`ironbark help COMMAND` or `ironbark COMMAND -h` shows a command's flags.")
	return found
}

// exitCode reports err on stderr and turns it into the exit status: 0
// for success and help, 2 for a wrong command line, 1 for the rest.
func exitCode(err error, stderr io.Writer) int {
	var u usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &u):
		fmt.Fprintf(stderr, "ironbark: %v\n", err)
		return 2
	default:
		fmt.Fprintf(stderr, "ironbark: %v\n", err)
		return 1
	}
}
