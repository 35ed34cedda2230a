package provision

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"ironbark/internal/lab"
)

var (
	sizesFlag  = flag.String("provision.sizes", "1,4,8", "comma-separated numbers of VMs provisioned at once, one round each")
	finishFlag = flag.String("provision.after-install", "reboot", "ironbark pxe --after-install: kexec or reboot (through the firmware and PXE)")
)

const (
	// installedMarker is printed by the installed appliance image's /init
	// once its network is up, followed by the host name the installer
	// wrote into its identity; then it starts the node agent.
	installedMarker = "IRONBARK-BENCH-INSTALLED host="
	// floorMarker is printed by the floor's initramfs as soon as it runs.
	floorMarker = "IRONBARK-BENCH-FLOOR"
	floorRuns   = 3
)

// BenchmarkProvision measures, in one run, the floor (one VM booting the
// Debian cloud kernel directly to userspace, and as many direct boots at
// once as each round has VMs) and the wall time from power-on until each
// size of blank VMs, PXE-installed at once, are enrolled nodes (the
// controller enrolled them: node list shows them up), with the time each phase took. Heavy
// (minutes), so it runs only when IRONBARK_BENCH_PROVISION=1, as
// bench/provision/run sets it: `go test -bench .` over the whole tree
// would otherwise repeat it.
func BenchmarkProvision(b *testing.B) {
	if os.Getenv("IRONBARK_BENCH_PROVISION") != "1" {
		b.Skip("takes minutes: run bench/provision/run (sets IRONBARK_BENCH_PROVISION=1)")
	}
	sizes, err := parseSizes(*sizesFlag)
	if err != nil {
		b.Fatal(err)
	}
	// Ctrl-C ends the benchmark through its cleanups instead of killing it.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	b.Cleanup(stop)
	lab.Require(b, "qemu-system-x86_64", "ip", "syslinux", "go", "ldd")
	if _, err := os.Stat("/usr/lib/ipxe/undionly.kpxe"); err != nil {
		lab.Missing(b, "/usr/lib/ipxe/undionly.kpxe (ipxe package)")
	}
	k := lab.GuestKernel(b)
	work := b.TempDir()
	ironbark, installer, agent := buildBinaries(b, work)
	data := filepath.Join(work, "data")
	ironbarkCmd(b, ironbark, "pxe", "setup", "--data-dir", data, "--kernel", k.Vmlinuz,
		"--modules", k.ModulesDir(), "--installer", installer)
	ironbarkCmd(b, ironbark, "pxe", "image", "compute", applianceImage(b, k, work, agent), "--data-dir", data)
	ironbarkCmd(b, ironbark, "cluster", "add", "bench", "--data-dir", data)

	n := lab.NewLabNet(b, "")
	addr := n.Addr.Addr().String()
	ctl := start(b, work, "controller", n.NS.Command(context.Background(), ironbark, "controller", "--data-dir", data,
		"--listen", net.JoinHostPort(addr, "8773"), "--node-listen", net.JoinHostPort(addr, "8774")))
	ctl.waitLog(ctx, b, "controller started", time.Minute)
	// -v: every DHCP decision is logged, which dates the firmware's end.
	pxe := start(b, work, "pxe", n.NS.Command(context.Background(), ironbark, "pxe", "--data-dir", data, "-v",
		"--interface", n.Bridge, "--kernel-args", "console=ttyS0 quiet", "--on-fail", "poweroff",
		"--after-install", *finishFlag, "--controller-url", "https://"+net.JoinHostPort(addr, "8774")))
	pxe.waitLog(ctx, b, "pxe serving", time.Minute)
	disc := start(b, work, "discover", n.NS.Command(context.Background(), ironbark, "discover",
		"--appliance", "compute", "--cluster", "bench", "--no-tui", "--data-dir", data))
	disc.waitLog(ctx, b, "discovering compute appliances", time.Minute)

	floorInitrd := floorInitramfs(b, k, work)
	fleet := &fleet{net: n, dir: work}
	r := &round{ironbark: ironbark, data: data, pxeLog: pxe.log, ctlLog: ctl.log}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		floor := measureFloor(ctx, b, k, floorInitrd, work)
		b.ReportMetric(floor.Seconds(), "floor-s")
		summary := []string{fmt.Sprintf("floor: one VM boots its kernel directly to userspace: %.1f s (median of %d)",
			floor.Seconds(), floorRuns)}
		for _, size := range sizes {
			took := r.provision(ctx, b, fleet.blank(b, size))
			all := slices.Max(column(took, len(phases)))
			// What the CPUs alone cost: as many direct boots at once.
			par := floor
			if size > 1 {
				par = directBoot(ctx, b, k, floorInitrd, work, size)
			}
			ratio := all.Seconds() / par.Seconds()
			b.ReportMetric(all.Seconds(), fmt.Sprintf("%dvm-s", size))
			b.ReportMetric(ratio, fmt.Sprintf("%dvm-xfloor", size))
			n := len(summary)
			summary = append(summary,
				fmt.Sprintf("%2d VM(s) at once, power-on to enrolled: %.1f s = %.1fx %d direct boot(s) at once (%.1f s), %.1fx one",
					size, all.Seconds(), ratio, size, par.Seconds(), all.Seconds()/floor.Seconds()),
				"    each VM enrolled after: "+seconds(column(took, len(phases))),
				"    median phase: "+phaseMedians(took))
			// Each round's figures as soon as it ends: a later round that
			// fails keeps them.
			b.Log("\n" + strings.Join(summary[n:], "\n"))
		}
		b.Log(fmt.Sprintf("summary (after install: %s):\n", *finishFlag) + strings.Join(summary, "\n"))
	}
}

// phases are the steps from power-on to an enrolled node, each ending at
// a mark: a line of the pxe server's log (p) about the machine's MAC or
// host, of its console (c) or of the controller's log about its host
// (l). SeaBIOS and iPXE write nothing to the serial port, so the pxe
// server's log dates the network boot. qemu's NIC option ROM is iPXE
// itself: its first DHCP gets the boot script's URL, with no TFTP of
// undionly.kpxe and no second DHCP (on a NIC with a plain PXE ROM both
// fall in the "dhcp, ipxe script" phase).
var phases = []struct{ name, where, mark, key string }{
	{"firmware", "p", "msg=dhcp ", "mac"},                            // its NIC ROM's first DHCP packet
	{"dhcp, ipxe script", "p", `msg="boot script"`, "mac"},           // its install script
	{"kernel+initramfs", "c", "ironbark-installer: installing ", ""}, // fetched over HTTP, booted, the installer up
	{"image stream+verify", "p", `msg="install done; boot action now os"`, "host"},
	{"reboot", "c", bootedMarker, ""},                  // kexec (or firmware, PXE, disk), the kernel's boot
	{"first boot", "c", installedMarker, ""},           // modules, ESP, DHCP
	{"enrollment", "l", `msg="node enrolled"`, "host"}, // the controller enrolled the agent: node list shows it up
}

// round provisions blank machines and dates their phases.
type round struct {
	ironbark, data string
	pxeLog, ctlLog string
}

// provision powers on ms at once and returns, for each machine, the
// time from power-on to the end of each phase (0 where its mark was not
// seen); the last is the controller's "node enrolled" for it (from then
// node list shows it up), after which
// its VM is stopped. `ironbark node list --json` must then show every
// machine's host up.
func (r *round) provision(ctx context.Context, b *testing.B, ms []*machine) [][]time.Duration {
	b.Helper()
	last := len(phases) - 1
	ps := make([]*proc, len(ms))
	took := make([][]time.Duration, len(ms))
	hosts := make([]string, len(ms))
	t0 := time.Now()
	for i, m := range ms {
		ps[i] = start(b, filepath.Dir(m.console), m.name+".qemu", m.cmd)
		took[i] = make([]time.Duration, len(phases))
	}
	const timeout = 20 * time.Minute
	for left := len(ms); left > 0; time.Sleep(200 * time.Millisecond) {
		interrupted(ctx, b)
		ctlLog, _ := os.ReadFile(r.ctlLog)
		for i, m := range ms {
			if took[i][last] != 0 {
				continue
			}
			exited := ps[i].exited()
			console, _ := os.ReadFile(m.console)
			for j, p := range phases {
				if p.where == "c" && took[i][j] == 0 && strings.Contains(string(console), p.mark) {
					took[i][j] = time.Since(t0)
				}
			}
			if hosts[i] == "" {
				if l, ok := lineWith(string(console), phases[2].mark); ok {
					if f := strings.Fields(l[strings.Index(l, phases[2].mark)+len(phases[2].mark):]); len(f) > 0 {
						hosts[i] = f[0]
					}
				}
			}
			if hosts[i] != "" {
				if at, ok := logTime(string(ctlLog), phases[last].mark, "host="+hosts[i]); ok {
					took[i][last] = max(at.Sub(t0), time.Millisecond)
					left--
					ps[i].stop()
					continue
				}
			}
			// A kernel that panics hangs its VM: say so now, not at the timeout.
			if strings.Contains(string(console), "Kernel panic") {
				b.Fatalf("%s (one of %d powered on at once): a kernel panicked; console tail:\n%s",
					m.name, len(ms), tailFile(m.console, 40))
			}
			if exited || time.Since(t0) > timeout {
				b.Fatalf("%s (one of %d powered on at once) never enrolled (host %q, exited: %v, %v); console tail:\n%s",
					m.name, len(ms), hosts[i], exited, ps[i].err, tailFile(m.console, 40))
			}
		}
	}
	// The network boot's and the install's marks, from the pxe server's log.
	pxeLog, _ := os.ReadFile(r.pxeLog)
	for i, m := range ms {
		for j, p := range phases {
			key := "mac=" + m.mac
			if p.key == "host" {
				key = "host=" + hosts[i]
			}
			if p.where != "p" {
				continue
			}
			if at, ok := logTime(string(pxeLog), p.mark, key); ok {
				took[i][j] = at.Sub(t0)
			}
		}
	}
	r.checkUp(b, hosts)
	for i, m := range ms {
		b.Logf("  %s (%s, %s): enrolled after %.1f s", m.name, hosts[i], m.mac, took[i][last].Seconds())
	}
	return took
}

// checkUp asserts that `ironbark node list --json` shows every host up.
func (r *round) checkUp(b *testing.B, hosts []string) {
	b.Helper()
	out, err := exec.Command(r.ironbark, "node", "list", "--json", "--data-dir", r.data).Output()
	if err != nil {
		b.Fatalf("node list --json: %v\n%s", err, out)
	}
	var rows []struct{ Hostname, State string }
	if err := json.Unmarshal(out, &rows); err != nil {
		b.Fatalf("node list --json: %v\n%s", err, out)
	}
	up := map[string]bool{}
	for _, row := range rows {
		up[row.Hostname] = row.State == "up"
	}
	for _, h := range hosts {
		if !up[h] {
			b.Fatalf("node list --json does not show %s up:\n%s", h, out)
		}
	}
}

// lineWith returns the first line of text that contains every one of subs.
func lineWith(text string, subs ...string) (string, bool) {
	for _, l := range strings.Split(text, "\n") {
		ok := true
		for _, s := range subs {
			// A host name ends at a space: compute-0-1 is not compute-0-10.
			if !strings.Contains(l+" ", s) || strings.HasPrefix(s, "host=") && !strings.Contains(l+" ", s+" ") {
				ok = false
				break
			}
		}
		if ok {
			return l, true
		}
	}
	return "", false
}

// logTime returns the time= of the first slog line of text with subs.
func logTime(text string, subs ...string) (time.Time, bool) {
	l, ok := lineWith(text, subs...)
	if !ok {
		return time.Time{}, false
	}
	f := strings.Fields(l)
	if len(f) == 0 || !strings.HasPrefix(f[0], "time=") {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, strings.TrimPrefix(f[0], "time="))
	return t, err == nil
}

func parseSizes(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > 200 {
			return nil, fmt.Errorf("-provision.sizes %q: want positive numbers like 1,4,8", s)
		}
		out = append(out, n)
	}
	return out, nil
}

func seconds(ds []time.Duration) string {
	s := make([]string, len(ds))
	for i, d := range ds {
		s[i] = fmt.Sprintf("%.1f", d.Seconds())
	}
	return strings.Join(s, " ") + " s"
}

// column is the time to the end of phase j-1 for every machine (j =
// len(phases): done).
func column(took [][]time.Duration, j int) []time.Duration {
	out := make([]time.Duration, len(took))
	for i, t := range took {
		out[i] = t[j-1]
	}
	return out
}

// phaseMedians is, per phase, the median over the machines of its
// duration: from the previous seen mark to its own. A mark not seen
// leaves its phase 0 and the next one takes its time.
func phaseMedians(took [][]time.Duration) string {
	out := make([]string, len(phases))
	var sum time.Duration
	for j, p := range phases {
		var ds []time.Duration
		for _, t := range took {
			if t[j] == 0 {
				ds = append(ds, 0)
				continue
			}
			prev := time.Duration(0)
			for k := j - 1; k >= 0; k-- {
				if t[k] != 0 {
					prev = t[k]
					break
				}
			}
			ds = append(ds, t[j]-prev)
		}
		slices.Sort(ds)
		med := ds[len(ds)/2]
		sum += med
		out[j] = fmt.Sprintf("%s %.1f", p.name, med.Seconds())
	}
	return strings.Join(out, ", ") + fmt.Sprintf(" s (sum %.1f)", sum.Seconds())
}

// measureFloor boots one VM straight into the kernel and a busybox
// initramfs floorRuns times and returns the median time to the marker.
func measureFloor(ctx context.Context, b *testing.B, k *lab.Kernel, initrd, dir string) time.Duration {
	b.Helper()
	runs := make([]time.Duration, floorRuns)
	for i := range runs {
		runs[i] = directBoot(ctx, b, k, initrd, dir, 1)
	}
	slices.Sort(runs)
	return runs[len(runs)/2]
}
