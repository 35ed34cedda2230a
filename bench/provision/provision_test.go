package provision

import (
	"context"
	"flag"
	"fmt"
	"os"
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

var sizesFlag = flag.String("provision.sizes", "1,4,8", "comma-separated numbers of VMs provisioned at once, one round each")

const (
	// installedMarker is printed by the installed appliance image's /init,
	// followed by the host name the installer wrote into its identity.
	installedMarker = "IRONBARK-BENCH-INSTALLED host="
	// floorMarker is printed by the floor's initramfs as soon as it runs.
	floorMarker = "IRONBARK-BENCH-FLOOR"
	floorRuns   = 3
)

// BenchmarkProvision measures, in one run, the floor (one VM booting the
// Debian cloud kernel directly to userspace) and the wall time of
// provisioning each size of blank VMs at once over PXE, and reports both
// with their ratio. Heavy (minutes), so it runs only when
// IRONBARK_BENCH_PROVISION=1, as bench/provision/run sets it: `go test
// -bench .` over the whole tree would otherwise repeat it.
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
	lab.Require(b, "qemu-system-x86_64", "ip", "syslinux", "go")
	if _, err := os.Stat("/usr/lib/ipxe/undionly.kpxe"); err != nil {
		lab.Missing(b, "/usr/lib/ipxe/undionly.kpxe (ipxe package)")
	}
	k := lab.GuestKernel(b)
	work := b.TempDir()
	ironbark, installer := buildBinaries(b, work)
	data := filepath.Join(work, "data")
	ironbarkCmd(b, ironbark, "pxe", "setup", "--data-dir", data, "--kernel", k.Vmlinuz,
		"--modules", k.ModulesDir(), "--installer", installer)
	ironbarkCmd(b, ironbark, "pxe", "image", "compute", applianceImage(b, k, work), "--data-dir", data)
	ironbarkCmd(b, ironbark, "cluster", "add", "bench", "--data-dir", data)

	n := lab.NewLabNet(b, "")
	pxe := start(b, work, "pxe", n.NS.Command(context.Background(), ironbark, "pxe", "--data-dir", data,
		"--interface", n.Bridge, "--kernel-args", "console=ttyS0 quiet", "--on-fail", "poweroff"))
	pxe.waitLog(ctx, b, "pxe serving", time.Minute)
	disc := start(b, work, "discover", n.NS.Command(context.Background(), ironbark, "discover",
		"--appliance", "compute", "--cluster", "bench", "--no-tui", "--data-dir", data))
	disc.waitLog(ctx, b, "discovering compute appliances", time.Minute)

	floorInitrd := floorInitramfs(b, k, work)
	fleet := &fleet{net: n, dir: work}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		floor := measureFloor(ctx, b, k, floorInitrd, work)
		b.ReportMetric(floor.Seconds(), "floor-s")
		summary := []string{fmt.Sprintf("floor: one VM boots its kernel directly to userspace: %.1f s (median of %d)",
			floor.Seconds(), floorRuns)}
		for _, size := range sizes {
			took := fleet.provision(ctx, b, size)
			each := make([]time.Duration, size)
			for i, t := range took {
				each[i] = t[len(t)-1]
			}
			all := slices.Max(each)
			ratio := all.Seconds() / floor.Seconds()
			b.ReportMetric(all.Seconds(), fmt.Sprintf("%dvm-s", size))
			b.ReportMetric(ratio, fmt.Sprintf("%dvm-xfloor", size))
			line := fmt.Sprintf("provision %d VM(s) at once: %.1f s = %.1fx floor", size, all.Seconds(), ratio)
			if size > 1 {
				// What the CPUs alone cost: as many direct boots at once.
				par := directBoot(ctx, b, k, floorInitrd, work, size)
				line += fmt.Sprintf(" (%d direct boots at once: %.1f s, so %.1fx that)", size, par.Seconds(), all.Seconds()/par.Seconds())
			}
			summary = append(summary, line, "    each VM done after: "+seconds(each), "    mean time from power-on to: "+phaseMeans(took))
		}
		b.Log("summary (power-on to installed, rebooted from own disk, marker printed):\n" + strings.Join(summary, "\n"))
	}
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

// phaseMeans averages, over the machines, the time to each phase.
func phaseMeans(took [][]time.Duration) string {
	out := make([]string, len(phases))
	for j, p := range phases {
		var sum time.Duration
		seen := 0
		for _, t := range took {
			if t[j] != 0 {
				sum += t[j]
				seen++
			}
		}
		if seen == 0 {
			out[j] = p.name + " (never seen)"
			continue
		}
		out[j] = fmt.Sprintf("%s %.1f", p.name, (sum / time.Duration(seen)).Seconds())
	}
	return strings.Join(out, ", ") + " s"
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
