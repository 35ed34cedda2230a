// Command ec2bench runs one EC2 workload against ironbark's controller and
// against moto's server (moto_server, the reference EC2 emulator) in the
// same run, with the same client (aws-sdk-go-v2), and prints throughput
// ratios ironbark/moto (above 1: ironbark is faster). It also measures
// how ironbark's DescribeInstances latency for one account changes as other
// accounts' instances grow (it should stay flat: every query is indexed by
// account). Run it through bench/ec2/run.
//
// ironbark runs in this process: the same store, Cloud and EC2 wire layer
// that `ironbark controller` serves, on a loopback listener, with
// placement by the real GREEDY policy over simulated nodes (there are no
// hypervisors here; nothing boots).
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	sdk "github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"ironbark/controller"
	"ironbark/controller/ec2"
	"ironbark/controller/ec2/ec2test"
	"ironbark/controller/sched"
	"ironbark/internal/nodeapi"
	"ironbark/internal/store"
)

type options struct {
	small, large int           // DescribeInstances sizes
	burst        int           // RunInstances calls in a burst
	workers      int           // concurrent callers in a burst
	window       time.Duration // how long each throughput measure runs at most
	others       []int         // other accounts' instance counts for the latency curve
	db           string        // store URL for ironbark ("" = SQLite in a temp dir)
	moto         string        // moto_server command
}

func main() {
	var o options
	var others string
	flag.IntVar(&o.small, "small", 1000, "instances for the first DescribeInstances measure")
	flag.IntVar(&o.large, "large", 10000, "instances for the second DescribeInstances measure")
	flag.IntVar(&o.burst, "burst", 200, "RunInstances calls (one instance each) per burst")
	flag.IntVar(&o.workers, "workers", 4, "concurrent callers in a RunInstances burst")
	flag.DurationVar(&o.window, "window", 5*time.Second, "longest time one throughput measure runs")
	flag.StringVar(&others, "others", "0,1000,10000,50000", "other accounts' instance counts for the latency curve")
	flag.StringVar(&o.db, "db", "", "ironbark store URL (default: SQLite in a temp dir; postgres://... for PostgreSQL)")
	flag.StringVar(&o.moto, "moto", "moto_server", "moto server command")
	flag.Parse()
	for _, s := range strings.Split(others, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			fmt.Fprintln(os.Stderr, "ec2bench: -others:", err)
			os.Exit(2)
		}
		o.others = append(o.others, n)
	}
	ctx := context.Background()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "ec2bench:", err)
		os.Exit(1)
	}
}

// target is one EC2 endpoint under test.
type target struct {
	name   string
	client *sdk.Client
	image  string
	vmType types.InstanceType
}

func newClient(endpoint, region, key, secret string) *sdk.Client {
	return sdk.New(sdk.Options{
		Region: region, BaseEndpoint: aws.String(endpoint),
		Credentials: credentials.NewStaticCredentialsProvider(key, secret, ""),
		Retryer:     aws.NopRetryer{},
		// Request bodies buffered: see ec2test.BufferingTransport
		// (aws/aws-sdk-go-v2#2737 on fast servers).
		HTTPClient: &http.Client{Transport: ec2test.BufferingTransport{Next: &http.Transport{MaxIdleConnsPerHost: 64}}},
	})
}

func run(ctx context.Context, o options) error {
	tmp, err := os.MkdirTemp("", "ec2bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	ib, err := startIronbark(ctx, o, tmp)
	if err != nil {
		return err
	}
	defer ib.close()
	moto, err := startMoto(ctx, o.moto)
	if err != nil {
		return err
	}
	defer moto.close()

	targets := []*target{ib.target, moto.target}
	type row struct {
		name   string
		rates  []float64
		detail string
	}
	var rows []row
	measure := func(name string, f func(t *target) (float64, error)) error {
		r := row{name: name}
		for _, t := range targets {
			rate, err := f(t)
			if err != nil {
				return fmt.Errorf("%s on %s: %w", name, t.name, err)
			}
			r.rates = append(r.rates, rate)
			fmt.Fprintf(os.Stderr, "  %-40s %-8s %10.1f/s\n", name, t.name, rate)
		}
		rows = append(rows, r)
		return nil
	}

	fmt.Fprintln(os.Stderr, "measuring (ironbark, then moto):")
	if err := measure(fmt.Sprintf("RunInstances x1, %d workers", o.workers), func(t *target) (float64, error) {
		return rate(o.window, o.burst, o.workers, func() error {
			_, err := t.client.RunInstances(ctx, &sdk.RunInstancesInput{ImageId: aws.String(t.image), InstanceType: t.vmType,
				MinCount: aws.Int32(1), MaxCount: aws.Int32(1)})
			return err
		})
	}); err != nil {
		return err
	}
	if err := measure("RunInstances x50 (instances/s), 1 worker", func(t *target) (float64, error) {
		r, err := rate(o.window, 10, 1, func() error {
			_, err := t.client.RunInstances(ctx, &sdk.RunInstancesInput{ImageId: aws.String(t.image), InstanceType: t.vmType,
				MinCount: aws.Int32(50), MaxCount: aws.Int32(50)})
			return err
		})
		return r * 50, err
	}); err != nil {
		return err
	}
	for _, size := range []int{o.small, o.large} {
		for _, t := range targets {
			if err := seed(ctx, t, size); err != nil {
				return fmt.Errorf("seed %s to %d: %w", t.name, size, err)
			}
		}
		// A full listing, in pages of 1,000 (moto pages even without
		// MaxResults).
		if err := measure(fmt.Sprintf("DescribeInstances, all %d instances", size), func(t *target) (float64, error) {
			return rate(o.window, 1<<20, 1, func() error {
				n, err := countAll(ctx, t)
				if err == nil && n < size {
					err = fmt.Errorf("got %d instances, want %d", n, size)
				}
				return err
			})
		}); err != nil {
			return err
		}
		if err := measure(fmt.Sprintf("DescribeInstances by id, %d instances", size), func(t *target) (float64, error) {
			id, err := someInstance(ctx, t)
			if err != nil {
				return 0, err
			}
			return rate(o.window, 1<<20, o.workers, func() error {
				_, err := t.client.DescribeInstances(ctx, &sdk.DescribeInstancesInput{InstanceIds: []string{id}})
				return err
			})
		}); err != nil {
			return err
		}
	}

	fmt.Println("ironbark vs moto_server: same workload, same client (aws-sdk-go-v2), loopback, one run")
	fmt.Printf("ironbark store: %s\n\n", ib.db.Engine())
	fmt.Printf("%-44s %12s %12s %10s\n", "workload (calls/s unless said)", "ironbark", "moto", "ratio")
	for _, r := range rows {
		fmt.Printf("%-44s %12.1f %12.1f %9.1fx\n", r.name, r.rates[0], r.rates[1], r.rates[0]/r.rates[1])
	}

	fmt.Printf("\nironbark DescribeInstances latency for an account holding 10 instances,\nas other accounts' instances grow:\n")
	fmt.Printf("%-28s %10s %10s\n", "other accounts' instances", "p50", "p90")
	if err := ib.flatness(ctx, o); err != nil {
		return err
	}
	return nil
}

func countInstances(rs []types.Reservation) int {
	n := 0
	for _, r := range rs {
		n += len(r.Instances)
	}
	return n
}

func someInstance(ctx context.Context, t *target) (string, error) {
	out, err := t.client.DescribeInstances(ctx, &sdk.DescribeInstancesInput{MaxResults: aws.Int32(5)})
	if err != nil {
		return "", err
	}
	if len(out.Reservations) == 0 {
		return "", fmt.Errorf("no instances")
	}
	return aws.ToString(out.Reservations[0].Instances[0].InstanceId), nil
}

// countAll lists every instance of the caller in pages of 1,000.
func countAll(ctx context.Context, t *target) (int, error) {
	n := 0
	p := sdk.NewDescribeInstancesPaginator(t.client, &sdk.DescribeInstancesInput{MaxResults: aws.Int32(1000)})
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			return 0, err
		}
		n += countInstances(out.Reservations)
	}
	return n, nil
}

// seed runs instances on t until it holds want (not counting terminated).
func seed(ctx context.Context, t *target, want int) error {
	have, err := countAll(ctx, t)
	if err != nil {
		return err
	}
	for have < want {
		n := min(want-have, 1000)
		if _, err := t.client.RunInstances(ctx, &sdk.RunInstancesInput{ImageId: aws.String(t.image), InstanceType: t.vmType,
			MinCount: aws.Int32(int32(n)), MaxCount: aws.Int32(int32(n))}); err != nil {
			return err
		}
		have += n
	}
	return nil
}

// rate calls f up to n times from workers goroutines, for at most window,
// and returns completed calls per second.
func rate(window time.Duration, n, workers int, f func() error) (float64, error) {
	var mu sync.Mutex
	var firstErr error
	done := 0
	deadline := time.Now().Add(window)
	start := time.Now()
	var wg sync.WaitGroup
	next := make(chan struct{})
	go func() {
		defer close(next)
		for i := 0; i < n && time.Now().Before(deadline); i++ {
			next <- struct{}{}
		}
	}()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range next {
				err := f()
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = err
				}
				done++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return 0, firstErr
	}
	return float64(done) / time.Since(start).Seconds(), nil
}

// ironbark is the controller under test, in this process.
type ironbark struct {
	*target
	db    *store.DB
	cloud *controller.Cloud
	srv   *http.Server
	url   string
}

// simPlacer places with the real GREEDY policy over simulated nodes, with
// usage from the ledger as the cluster side does.
type simPlacer struct {
	ledger *controller.Cloud
	nodes  []sched.Node
	mu     sync.Mutex
}

func (p *simPlacer) Zones(ctx context.Context) ([]controller.Zone, error) {
	return []controller.Zone{{Name: "bench", State: "available"}}, nil
}

func (p *simPlacer) Place(ctx context.Context, zone string, vt nodeapi.VMType, n int) (string, []string, error) {
	use, err := p.ledger.Usage(ctx)
	if err != nil {
		return "", nil, err
	}
	nodes := make([]sched.Node, len(p.nodes))
	for i, nd := range p.nodes {
		u := use.Of(nd.ID)
		nodes[i] = sched.Node{ID: nd.ID, Instances: u.Instances, Free: nodeapi.Capacity{
			Cores: nd.Free.Cores - u.Cores, MemoryMiB: nd.Free.MemoryMiB - u.MemoryMiB, DiskGiB: nd.Free.DiskGiB - u.DiskGiB}}
	}
	pol, _ := sched.New(sched.Greedy)
	ids, ok := sched.PlaceN(pol, nodes, vt, n)
	if !ok {
		return "", nil, controller.ErrInsufficientCapacity
	}
	return "bench", ids, nil
}

func startIronbark(ctx context.Context, o options, tmp string) (*ironbark, error) {
	url := o.db
	if url == "" {
		url = filepath.Join(tmp, "ironbark.db")
	}
	db, err := store.Open(ctx, url)
	if err != nil {
		return nil, err
	}
	if err := db.Migrate(ctx, controller.Migrations()); err != nil {
		return nil, err
	}
	log := slog.New(slog.DiscardHandler)
	cloud, err := controller.New(controller.Config{}, db, nil, log)
	if err != nil {
		return nil, err
	}
	// 1,000 simulated nodes of 64 cores / 256 GiB / 4 TiB: room for
	// 64,000 m1.small.
	sp := &simPlacer{ledger: cloud}
	for i := range 1000 {
		sp.nodes = append(sp.nodes, sched.Node{ID: fmt.Sprintf("sim-%04d", i),
			Free: nodeapi.Capacity{Cores: 64, MemoryMiB: 256 << 10, DiskGiB: 4 << 10}})
	}
	cloud.SetPlacer(sp)
	admin, err := controller.EnsureAdmin(ctx, db)
	if err != nil {
		return nil, err
	}
	user, err := controller.CreateAccount(ctx, db, "bench", false)
	if err != nil {
		return nil, err
	}
	image, err := controller.RegisterStoredImage(ctx, db, controller.ImageRecord{Owner: admin.ID, Name: "bench",
		Digest: "sha256:" + strings.Repeat("be", 32), Size: 1 << 30, Public: true})
	if err != nil {
		return nil, err
	}
	key, err := controller.TokenKey(ctx, db)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: ec2.NewServer(ec2.Config{Handler: cloud, Credentials: cloud, Logger: log, TokenKey: key})}
	go srv.Serve(ln)
	ib := &ironbark{db: db, cloud: cloud, srv: srv, url: "http://" + ln.Addr().String() + "/"}
	ib.target = &target{name: "ironbark", client: newClient(ib.url, "ironbark", user.AccessKey, user.SecretKey), image: image, vmType: "m1.small"}
	return ib, nil
}

func (ib *ironbark) close() {
	ib.srv.Close()
	ib.db.Close()
}

// flatness measures DescribeInstances for a probe account of 10 instances
// while other accounts grow, seeding them in-process through the same
// RunInstances action in batches of 1,000.
func (ib *ironbark) flatness(ctx context.Context, o options) error {
	probe, err := controller.CreateAccount(ctx, ib.db, "probe", false)
	if err != nil {
		return err
	}
	pc := newClient(ib.url, "ironbark", probe.AccessKey, probe.SecretKey)
	pt := &target{name: "probe", client: pc, image: ib.image, vmType: "m1.small"}
	if err := seed(ctx, pt, 10); err != nil {
		return err
	}
	others := 0
	batch := 0
	for _, want := range o.others {
		for others < want {
			batch++
			acct, err := controller.CreateAccount(ctx, ib.db, fmt.Sprintf("other-%d", batch), false)
			if err != nil {
				return err
			}
			n := min(want-others, 1000)
			_, err = ib.cloud.ServeEC2(ctx, &ec2.Request{Action: "RunInstances", Version: "2016-11-15",
				Principal: ec2.Principal{AccountID: acct.ID, AccessKey: acct.AccessKey},
				Params: map[string][]string{"ImageId": {ib.image}, "MinCount": {strconv.Itoa(n)}, "MaxCount": {strconv.Itoa(n)},
					"InstanceType": {"m1.small"}}})
			if err != nil {
				return fmt.Errorf("seed other accounts: %w", err)
			}
			others += n
		}
		var lat []time.Duration
		for range 200 {
			start := time.Now()
			out, err := pc.DescribeInstances(ctx, &sdk.DescribeInstancesInput{})
			if err != nil {
				return err
			}
			if countInstances(out.Reservations) != 10 {
				return fmt.Errorf("probe sees %d instances", countInstances(out.Reservations))
			}
			lat = append(lat, time.Since(start))
		}
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		fmt.Printf("%-28d %10s %10s\n", others, lat[len(lat)/2].Round(time.Microsecond), lat[len(lat)*9/10].Round(time.Microsecond))
	}
	return nil
}

// motoServer is moto_server on a random loopback port.
type motoServer struct {
	*target
	cmd *exec.Cmd
}

func startMoto(ctx context.Context, command string) (*motoServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cmd := exec.CommandContext(ctx, command, "-H", "127.0.0.1", "-p", strconv.Itoa(port))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w (pip's moto[server] provides it)", command, err)
	}
	m := &motoServer{cmd: cmd}
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	m.target = &target{name: "moto", client: newClient(url, "us-east-1", "AKIAMOTOBENCH0000000", "secret"), vmType: "m1.small"}
	deadline := time.Now().Add(60 * time.Second)
	for {
		out, err := m.client.DescribeImages(ctx, &sdk.DescribeImagesInput{Owners: []string{"amazon"}})
		if err == nil && len(out.Images) > 0 {
			m.image = aws.ToString(out.Images[0].ImageId)
			return m, nil
		}
		if time.Now().After(deadline) {
			m.close()
			return nil, fmt.Errorf("moto_server did not answer: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (m *motoServer) close() {
	if m.cmd.Process != nil {
		_ = syscall.Kill(-m.cmd.Process.Pid, syscall.SIGTERM)
		_ = m.cmd.Wait()
	}
}
