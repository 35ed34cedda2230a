package scale

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"
)

// loggedDurations is the duration of every EC2 call of the action in a
// controller's log (its text request lines), in log order.
func loggedDurations(log, action string) []time.Duration {
	var out []time.Duration
	for _, line := range strings.Split(log, "\n") {
		if !strings.Contains(line, " action="+action+" ") {
			continue
		}
		_, v, ok := strings.Cut(line, " duration=")
		if !ok {
			continue
		}
		v, _, _ = strings.Cut(v, " ")
		if d, err := time.ParseDuration(v); err == nil {
			out = append(out, d)
		}
	}
	return out
}

// countUp counts the nodes in state up in `node list --json` output (one
// array, or one object a line).
func countUp(out string) (int, error) {
	type node struct {
		State string `json:"state"`
	}
	var nodes []node
	if s := strings.TrimSpace(out); strings.HasPrefix(s, "[") {
		if err := json.Unmarshal([]byte(s), &nodes); err != nil {
			return 0, fmt.Errorf("node list: %w", err)
		}
	} else {
		sc := bufio.NewScanner(strings.NewReader(s))
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var n node
			if err := json.Unmarshal(sc.Bytes(), &n); err != nil {
				return 0, fmt.Errorf("node list: %w", err)
			}
			nodes = append(nodes, n)
		}
	}
	up := 0
	for _, n := range nodes {
		if n.State == "up" {
			up++
		}
	}
	return up, nil
}

// Print writes the results as one table, a row per engine and size, so
// the growth with size reads down each engine's rows.
func Print(w io.Writer, rs []Result) {
	fmt.Fprintf(w, "%-8s %6s %7s | %9s %9s %7s %8s %8s %7s | %9s %9s | %9s %9s %9s %9s %9s %9s | %7s %6s %8s | %7s %7s\n",
		"store", "nodes", "insts", "run p50", "run p99", "inst/s", "ms/inst", "KiB/inst", "ad/inst", "desc p50", "desc p99", "disp p50", "disp p99", "paced p50", "paced p99", "peer p50", "peer p99",
		"hb/s", "cores", "ms/1k hb", "RSS MiB", "DB MiB")
	for _, r := range rs {
		perK := 0.0
		if r.HeartbeatsPerSec > 0 {
			perK = r.SteadyCPU / r.HeartbeatsPerSec * 1e6
		}
		fmt.Fprintf(w, "%-8s %6d %7d | %9s %9s %7.0f %8.2f %8.1f %7.0f | %9s %9s | %9s %9s %9s %9s %9s %9s | %7.0f %6.2f %8.1f | %7.0f %7.1f\n",
			r.Engine, r.Size.Nodes, r.Size.Instances, ms(r.RunP50), ms(r.RunP99), r.RunPerSec, float64(r.LaunchCPU)/float64(time.Millisecond),
			r.LaunchBytes/1024, r.LaunchMembers,
			ms(r.DescribeP50), ms(r.DescribeP99), ms(r.DispatchP50), ms(r.DispatchP99), ms(r.PacedP50), ms(r.PacedP99), peerMS(r, r.PeerP50), peerMS(r, r.PeerP99),
			r.HeartbeatsPerSec, r.SteadyCPU, perK, float64(r.RSS)/(1<<20), float64(r.DBSizeBytes)/(1<<20))
	}
	fmt.Fprintln(w, "run: RunInstances call latency (each call launches PerCall instances), instances launched per second,")
	fmt.Fprintln(w, "and the controller's CPU milliseconds per instance launched and dispatched (steadier than times on a shared machine);")
	fmt.Fprintln(w, "KiB/inst, ad/inst: what the nodes' desired-state answers carried meanwhile, per instance: KiB, and member addresses")
	fmt.Fprintln(w, "of security groups (whole lists, or deltas' changes);")
	fmt.Fprintln(w, "desc: one account listing all its instances; disp: RunInstances sent -> the node has the launch;")
	fmt.Fprintln(w, "paced: the same for RunInstances of one instance sent at a fixed rate (-paced-rate) after the fill, each at its time;")
	fmt.Fprintln(w, "peer: RunInstances sent -> each node holding the instance's security group's member list has its address;")
	fmt.Fprintln(w, "hb/s: heartbeats answered per second in the steady state (every node heartbeating and following its instances),")
	fmt.Fprintln(w, "cores: the controller's CPU in that window, ms/1k hb: its CPU milliseconds per 1,000 heartbeats;")
	fmt.Fprintln(w, "RSS: the controller's resident memory at the end; DB: the store's size on disk.")
}

// peerMS is a peer percentile, "-" when nothing was timed (nodes asking
// for whole lists get no deltas to time).
func peerMS(r Result, d time.Duration) string {
	if r.PeerArrivals == 0 {
		return "-"
	}
	return ms(d)
}

func ms(d time.Duration) string {
	return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
}
