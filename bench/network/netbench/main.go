// Command netbench compares the node's security group firewall
// (nodeagent/secgroups) with the standard tool on a lab network: the time
// to apply one rule change on a node with 1,000 rules and 100 instances
// against `nft -f` of the same full ruleset, and the UDP packet rate
// between two instances through the instance chains against no ruleset.
// It prints ratios. Run it through bench/network/run.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"ironbark/internal/lab"
)

// env is the lab kit's T for this program (lab.RunProgram makes one per
// comparison).
type env = lab.Program

type options struct {
	instances, rules int
	changes, loads   int
	seconds, rounds  int
	verbose          bool
}

func main() {
	var o options
	flag.IntVar(&o.instances, "instances", 100, "instances on the node")
	flag.IntVar(&o.rules, "rules", 1000, "security group rules on the node")
	flag.IntVar(&o.changes, "changes", 20, "rule changes timed (median counts)")
	flag.IntVar(&o.loads, "loads", 10, "full loads timed, each way (median counts)")
	flag.IntVar(&o.seconds, "seconds", 1, "seconds per packet rate run")
	flag.IntVar(&o.rounds, "rounds", 9, "packet rate pairs of runs, ruleset off then on (the median ratio counts)")
	flag.BoolVar(&o.verbose, "v", false, "log progress")
	flag.Parse()
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "netbench: needs root (network namespaces, nftables)")
		os.Exit(1)
	}
	// A closed pipe or a signal must not skip the cleanup of namespaces.
	signal.Ignore(syscall.SIGPIPE)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	ok := true
	for _, run := range []func(*env, options) error{benchApply, benchPackets} {
		if err := runOne(o, run, sig); err != nil {
			fmt.Fprintln(os.Stderr, "netbench:", err)
			ok = false
		}
	}
	if !ok {
		os.Exit(1)
	}
}

// runOne runs one comparison with its own lab, always cleaned up.
func runOne(o options, run func(*env, options) error, sig <-chan os.Signal) (err error) {
	select {
	case s := <-sig:
		return fmt.Errorf("stopped by %v", s)
	default:
	}
	return lab.RunProgram(o.verbose, func(e *env) error { return run(e, o) })
}

func ratio(a, b float64) string {
	if b == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2fx", a/b)
}
