// Command pxebench compares ironbark's PXE servers with the standard
// Debian tools on lab networks: DHCP (full DORA exchanges per second from
// thousands of simulated MACs, leases persisted) against Kea (and
// dnsmasq with -dnsmasq), TFTP (a 64 MiB file to 1 client, 16 MiB to 32
// at once, atftp clients with and without windowsize) against tftpd-hpa,
// and HTTP image streams (32 and 128 at once, each resumed with a Range
// request) against nginx-light. Each ironbark server runs as its own
// process, like the reference. It prints medians and ratios
// ironbark/reference. Run it through bench/pxe/run.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"runtime/pprof"
	"strings"
	"syscall"

	"ironbark/internal/lab"
	"ironbark/pxe"
)

// env is the lab kit's T for this program (lab.RunProgram makes one per
// comparison).
type env = lab.Program

func main() {
	var o options
	flag.IntVar(&o.macs, "macs", 3000, "simulated DHCP clients (MACs)")
	flag.IntVar(&o.inflight, "inflight", 32, "DORA exchanges in flight at once")
	flag.IntVar(&o.dhcpRounds, "dhcp-rounds", 9, "DHCP rounds per server (the median counts; a round of 3,000 clients lasts under a second, and a busy machine's load comes and goes at that scale)")
	flag.StringVar(&o.dhcpBaseline, "dhcp-baseline", "", "also run the DHCP server of this pxebench binary (one built from another commit, say) as \"baseline\"")
	flag.BoolVar(&o.dnsmasq, "dnsmasq", false, "also run dnsmasq (one round: it is 10-50 times slower)")
	flag.IntVar(&o.tftpMiB, "tftp-mib", 64, "TFTP file size in MiB for the single client")
	flag.IntVar(&o.tftpClients, "tftp-clients", 32, "concurrent TFTP clients in the parallel run")
	flag.IntVar(&o.blksize, "blksize", 1468, "TFTP blksize the clients ask for")
	flag.IntVar(&o.tftpParMiB, "tftp-parallel-mib", 16, "TFTP file size in MiB for each of the parallel clients")
	flag.IntVar(&o.tftpWindow, "tftp-window", 16, "TFTP windowsize the clients ask for in the windowed runs")
	flag.IntVar(&o.tftpRounds, "tftp-rounds", 7, "single-client TFTP rounds per server and mode (the median counts)")
	flag.IntVar(&o.tftpParRounds, "tftp-parallel-rounds", 5, "parallel TFTP rounds per server and mode (the median counts)")
	flag.StringVar(&o.tftpBaseline, "tftp-baseline", "", "also run the TFTP server of this pxebench binary (one built from another commit, say) as \"baseline\", in the same rounds")
	flag.StringVar(&o.tftpCases, "tftp-cases", "all", "TFTP cases to run: all, or some of window-single,window-parallel,lockstep-single,lockstep-parallel")
	only := flag.String("only", "dhcp,tftp,http", "which comparisons to run")
	flag.BoolVar(&o.verbose, "v", false, "log server output and progress")
	flag.StringVar(&o.cpuProfile, "cpuprofile", "", "write ironbark servers' CPU profiles to this path (+ .dhcp, .tftp)")
	dhcpIface := flag.String("serve-dhcp", "", "internal: run only ironbark's DHCP server on this interface")
	dhcpAddr := flag.String("serve-dhcp-addr", "", "internal: its address and prefix")
	dhcpPool := flag.String("serve-dhcp-pool", "", "internal: its pool FIRST-LAST")
	dhcpDB := flag.String("serve-dhcp-db", "", "internal: its lease database")
	dhcpFsync := flag.Bool("serve-dhcp-fsync", false, "internal: SQLite synchronous=FULL")
	flag.IntVar(&o.httpMiB, "http-mib", 128, "HTTP image size in MiB (each stream fetches all of it; with the splice client a 32-stream round of 32 MiB lasts a fifth of a second, too short on a shared machine)")
	flag.IntVar(&o.httpRounds, "http-rounds", 9, "HTTP rounds per server and concurrency (the median counts)")
	flag.StringVar(&o.httpClient, "http-client", "splice", "HTTP client: splice (bodies spliced to /dev/null, never copied to user space) or nethttp (Go's net/http, as the installer)")
	httpAddr := flag.String("serve-http", "", "internal: run only ironbark's boot HTTP server on this address")
	httpDir := flag.String("serve-http-dir", "", "internal: its data directory")
	httpImage := flag.String("serve-http-image", "", "internal: the image it serves")
	httpGetURL := flag.String("http-get", "", "internal: run the HTTP client: fetch this URL")
	httpStreams := flag.Int("http-streams", 32, "internal: the client's concurrent streams")
	httpSize := flag.Int64("http-size", 0, "internal: the image size the client expects")
	serveAddr := flag.String("serve-tftp", "", "internal: run only ironbark's TFTP server on this address")
	serveRoot := flag.String("serve-tftp-root", "", "internal: its root directory")
	flag.Parse()
	if *httpGetURL != "" {
		if err := httpGet(*httpGetURL, *httpStreams, *httpSize, o.httpClient); err != nil {
			fmt.Fprintln(os.Stderr, "pxebench http client:", err)
			os.Exit(1)
		}
		return
	}
	if *serveAddr != "" || *dhcpIface != "" || *httpAddr != "" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		if os.Getenv("GOGC") == "" {
			debug.SetGCPercent(pxe.GCPercent) // as ironbark pxe serve does
		}
		if o.cpuProfile != "" {
			f, err := os.Create(o.cpuProfile)
			if err == nil && pprof.StartCPUProfile(f) == nil {
				defer f.Close()
				defer pprof.StopCPUProfile()
			}
		}
		var err error
		switch {
		case *dhcpIface != "":
			err = serveDHCP(ctx, *dhcpIface, *dhcpAddr, *dhcpPool, *dhcpDB, *dhcpFsync, o.verbose)
		case *httpAddr != "":
			err = serveHTTP(ctx, *httpAddr, *httpDir, *httpImage)
		default:
			err = serveTFTP(ctx, *serveAddr, *serveRoot, o.verbose)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "pxebench server:", err)
			stop()
			pprof.StopCPUProfile()
			os.Exit(1)
		}
		return
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "pxebench: needs root (network namespaces)")
		os.Exit(1)
	}
	// A closed pipe (bench/pxe/run | head) or a signal must not skip the
	// cleanup of namespaces and servers: ignore SIGPIPE, turn the others
	// into a cancelled context.
	signal.Ignore(syscall.SIGPIPE)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	ok := true
	for _, which := range strings.Split(*only, ",") {
		var run func(context.Context, *env, options) error
		switch which {
		case "dhcp":
			run = benchDHCP
		case "tftp":
			run = benchTFTP
		case "http":
			run = benchHTTP
		default:
			fmt.Fprintf(os.Stderr, "pxebench: unknown comparison %q\n", which)
			os.Exit(2)
		}
		if err := runOne(ctx, o, run); err != nil {
			fmt.Fprintf(os.Stderr, "pxebench %s: %v\n", which, err)
			ok = false
		}
	}
	if !ok {
		os.Exit(1)
	}
}

type options struct {
	macs, inflight            int
	dhcpRounds                int
	dnsmasq                   bool
	dhcpBaseline              string
	tftpBaseline              string
	tftpMiB, tftpClients      int
	tftpParMiB, tftpWindow    int
	tftpRounds, tftpParRounds int
	blksize                   int
	tftpCases                 string
	verbose                   bool
	cpuProfile                string
	httpMiB, httpRounds       int
	httpClient                string
}

// runOne runs one comparison with its own lab, always cleaned up.
func runOne(ctx context.Context, o options, run func(context.Context, *env, options) error) (err error) {
	return lab.RunProgram(o.verbose, func(e *env) error { return run(ctx, e, o) })
}

func ratio(a, b float64) string {
	if b == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2fx", a/b)
}
