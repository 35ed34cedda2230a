// Command scalebench runs bench/scale's load (N simulated nodes, M tenants
// on the EC2 API) against a real `ironbark controller` at each size, on
// SQLite and on PostgreSQL, and prints one table: the curve of each
// measure over the sizes. Run it through bench/scale/run.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"net/http"
	_ "net/http/pprof"
	"net/url"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"ironbark/bench/scale"
	"ironbark/internal/store"
)

func main() {
	var (
		sizes, engines, pg, bin string
		o                       scale.Options
	)
	flag.StringVar(&sizes, "sizes", "100:1000,1000:5000", "NODES:INSTANCES,... the points of the curve")
	flag.StringVar(&engines, "engines", "sqlite,postgres", "stores to run on")
	flag.StringVar(&pg, "pg", os.Getenv("IRONBARK_BENCH_PG"), "admin URL of a PostgreSQL server (a fresh database per run)")
	flag.StringVar(&bin, "bin", "bin/ironbark", "the ironbark binary")
	flag.IntVar(&o.Accounts, "accounts", 100, "tenant accounts the instances are spread over")
	flag.IntVar(&o.PerCall, "per-call", 10, "instances per RunInstances call")
	flag.IntVar(&o.Workers, "workers", 8, "RunInstances calls in flight")
	flag.DurationVar(&o.Steady, "steady", 20*time.Second, "steady-state window counting heartbeats")
	flag.IntVar(&o.DescribeCalls, "describe", 5, "DescribeInstances calls per account")
	flag.IntVar(&o.PacedCalls, "paced-calls", 200, "RunInstances of one instance sent at a fixed rate after the fill")
	flag.Float64Var(&o.PacedRate, "paced-rate", 20, "paced RunInstances calls a second")
	flag.BoolVar(&o.Settle, "settle", false, "before the paced launches, wait until the fill's member-list updates stop reaching the nodes")
	flag.BoolVar(&o.OwnLists, "own-lists", false, "each simulated node applies every member-list delta itself (the generator's CPU as before nodes shared them)")
	flag.BoolVar(&o.NoStream, "no-stream", false, "nodes ask for one desired-state answer per request (agents before streamed answers)")
	flag.BoolVar(&o.WholeMembers, "whole-members", false, "nodes hold no member lists and get them whole in every answer (agents before member-list deltas)")
	flag.StringVar(&o.ControllerLog, "controller-log", "", "write the controller's log to FILE after the paced launches")
	flag.StringVar(&o.DebugAddr, "debug-listen", "", "serve the controller's profiler on HOST:PORT (go tool pprof http://HOST:PORT/debug/pprof/profile)")
	var selfDebug string
	flag.StringVar(&selfDebug, "self-debug-listen", "", "serve this load generator's own profiler on HOST:PORT (its simulated nodes and tenants)")
	flag.Parse()
	if selfDebug != "" {
		// The generator shares the machine with the controller: its own
		// profile says how much of a run's lag is its own.
		go func() {
			if err := http.ListenAndServe(selfDebug, nil); err != nil {
				fmt.Fprintln(os.Stderr, "scalebench: -self-debug-listen:", err)
			}
		}()
	}
	if os.Getenv("GOGC") == "" {
		// The simulated nodes each hold their member lists (over a GiB
		// live at 10,000 nodes): at the default the collector, not the
		// nodes, took a third of the generator's CPU, on cores it shares
		// with the controller it measures. The controller keeps its own
		// setting (a GOGC in the environment reaches both).
		debug.SetGCPercent(400)
	}
	o.Binary = bin
	o.Progress = os.Stderr
	pts, err := parseSizes(sizes)
	if err != nil {
		fmt.Fprintln(os.Stderr, "scalebench: -sizes:", err)
		os.Exit(2)
	}
	ctx := context.Background()
	var results []scale.Result
	failed := false
	for _, engine := range strings.Split(engines, ",") {
		for _, sz := range pts {
			r, err := runOne(ctx, o, strings.TrimSpace(engine), pg, sz)
			if err != nil {
				fmt.Fprintf(os.Stderr, "scalebench: %s %s: %v\n", engine, sz, err)
				failed = true
				continue
			}
			if err := r.Check(); err != nil {
				fmt.Fprintf(os.Stderr, "scalebench: %s %s: WRONG: %v\n", engine, sz, err)
				failed = true
			}
			results = append(results, r)
		}
	}
	fmt.Printf("bench/scale: %d tenant accounts, RunInstances of %d with %d in flight, aws-sdk-go-v2; one machine (load generator and controller share its cores)\n\n",
		o.Accounts, o.PerCall, o.Workers)
	scale.Print(os.Stdout, results)
	if failed {
		os.Exit(1)
	}
}

func runOne(ctx context.Context, o scale.Options, engine, pg string, sz scale.Size) (scale.Result, error) {
	dir, err := os.MkdirTemp("", "scalebench-")
	if err != nil {
		return scale.Result{}, err
	}
	defer os.RemoveAll(dir)
	o.DataDir, o.Size = dir, sz
	switch engine {
	case "sqlite":
	case "postgres":
		if pg == "" {
			return scale.Result{}, fmt.Errorf("no PostgreSQL: give -pg or IRONBARK_BENCH_PG (bench/scale/run starts one)")
		}
		dbURL, drop, err := freshDatabase(ctx, pg)
		if err != nil {
			return scale.Result{}, err
		}
		defer drop()
		o.DB = dbURL
	default:
		return scale.Result{}, fmt.Errorf("unknown engine %q (sqlite, postgres)", engine)
	}
	return scale.Run(ctx, o)
}

// freshDatabase makes an empty database on the server and returns its URL
// and how to drop it.
func freshDatabase(ctx context.Context, admin string) (string, func(), error) {
	adb, err := store.Open(ctx, admin)
	if err != nil {
		return "", nil, err
	}
	defer adb.Close()
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "scale_" + hex.EncodeToString(b[:])
	if _, err := adb.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return "", nil, fmt.Errorf("create database: %w", err)
	}
	u, err := url.Parse(admin)
	if err != nil {
		return "", nil, err
	}
	u.Path = "/" + name
	return u.String(), func() {
		if a, err := store.Open(context.Background(), admin); err == nil {
			_, _ = a.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
			a.Close()
		}
	}, nil
}

func parseSizes(s string) ([]scale.Size, error) {
	var out []scale.Size
	for _, p := range strings.Split(s, ",") {
		n, i, ok := strings.Cut(strings.TrimSpace(p), ":")
		if !ok {
			return nil, fmt.Errorf("%q: want NODES:INSTANCES", p)
		}
		nodes, err1 := strconv.Atoi(n)
		insts, err2 := strconv.Atoi(i)
		if err1 != nil || err2 != nil || nodes <= 0 || insts <= 0 {
			return nil, fmt.Errorf("%q: want two positive numbers", p)
		}
		out = append(out, scale.Size{Nodes: nodes, Instances: insts})
	}
	return out, nil
}
