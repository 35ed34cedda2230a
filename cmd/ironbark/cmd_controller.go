package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/url"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"time"

	"ironbark/controller"
	"ironbark/controller/cluster"
	"ironbark/controller/ec2"
	"ironbark/images/blobstore"
	"ironbark/internal/httplimit"
	"ironbark/internal/nodeapi"
	"ironbark/internal/schedwait"
	"ironbark/internal/store"
	"ironbark/operator"
	"ironbark/pxe"
)

// controllerFlags are the flags of `ironbark controller`.
type controllerFlags struct {
	listen, nodeListen, endpoint, region, vmTypesFile string
	debugListen                                       string
	perClient                                         int
	plainHTTP                                         bool
	serverNames                                       listFlag
}

func controllerRun(fs *flag.FlagSet) runFunc {
	var f controllerFlags
	fs.StringVar(&f.listen, "listen", ":8773", "EC2 API address HOST:PORT")
	fs.StringVar(&f.nodeListen, "node-listen", ":8774", "node API (mTLS) address HOST:PORT")
	fs.StringVar(&f.endpoint, "endpoint", "", "EC2 URL written to credentials (default: from --listen)")
	fs.StringVar(&f.region, "region", "", "region name (default: from DATA/controller.json, else "+controller.DefaultRegion+")")
	fs.StringVar(&f.vmTypesFile, "vm-types", "", "JSON file of VM types (default: DATA/controller.json's, else Eucalyptus' defaults)")
	fs.BoolVar(&f.plainHTTP, "plain-http", false,
		"serve the EC2 API over plain HTTP instead of HTTPS (keys and user data then cross the network in the clear)")
	fs.Var(&f.serverNames, "server-name", "another host name or IP the nodes reach the node API at, for its certificate (repeatable; the frontend's private address)")
	fs.StringVar(&f.debugListen, "debug-listen", "",
		"serve Go's profiler (/debug/pprof/) on HOST:PORT, to diagnose a slow controller (keep it on loopback)")
	fs.IntVar(&f.perClient, "max-conns-per-client", httplimit.Default().PerClient,
		"connections one client address may hold open on each API listener")
	return func(ctx context.Context, e *env) error { return runController(ctx, e, f) }
}

// runController serves the EC2 and node APIs until ctx ends.
func runController(ctx context.Context, e *env, f controllerFlags) error {
	log := e.logger(slog.LevelInfo)
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(controller.GCPercent)
	}

	settings, err := controller.LoadSettings(e.dataDir)
	if err != nil {
		return err
	}
	if e.db != "" {
		settings.DB = e.db
	}
	// pxe's tables too: the admin actions (the remote dashboard) read hosts.
	db, err := e.openStore(ctx, append(controller.Migrations(), pxe.Migrations()...))
	if err != nil {
		return err
	}
	if n, err := controller.SealSecrets(ctx, db); err != nil {
		return fmt.Errorf("controller: %w", err)
	} else if n > 0 {
		log.Info("sealed access key secrets stored in plaintext", "count", n, "key_file", db.KeyFile())
	}
	if f.region != "" {
		settings.Region = f.region // remembered for the other commands
	}
	run := settings
	if f.vmTypesFile != "" {
		if run.VMTypes, err = controller.LoadVMTypes(f.vmTypesFile); err != nil {
			return err
		}
	}
	run = run.Resolved()
	// With several controllers on one PostgreSQL, one at a time runs the
	// periodic jobs; the store's advisory lock elects it.
	jobs := db.Leader()
	cfg := controller.Config{Region: run.Region, VMTypes: run.VMTypes, PublicAddresses: run.PublicAddresses,
		InstanceSubnet: run.InstanceSubnet, ClusterSubnets: run.ClusterSubnets, Jobs: jobs, DataDir: e.dataDir}

	ln, err := net.Listen("tcp", f.listen)
	if err != nil {
		return fmt.Errorf("controller: %w", err)
	}
	defer ln.Close()
	nodeLn, err := net.Listen("tcp", f.nodeListen)
	if err != nil {
		return fmt.Errorf("controller: node api: %w", err)
	}
	defer nodeLn.Close()
	cfg.Endpoint = f.endpoint
	if cfg.Endpoint == "" {
		cfg.Endpoint = endpointFor(ln.Addr(), !f.plainHTTP)
	}

	blobs, err := blobstore.Open(e.dir().Images())
	if err != nil {
		return err
	}
	cfg.ArtifactURL = func(d string) string { return blobstore.URLPath(nodeapi.PathBlobs, blobstore.Digest(d)) }
	cfg.BlobSize = func(_ context.Context, d string) (int64, error) { return blobs.Size(blobstore.Digest(d)) }
	var svc *cluster.Service
	cfg.Notify = func(node string) { svc.Notify(node) }
	cfg.NotifyInTx = func(ctx context.Context, tx *store.Tx, nodes ...string) error {
		return svc.NotifyInTx(ctx, tx, nodes...)
	}
	cfg.NotifyGroupsInTx = func(ctx context.Context, tx *store.Tx, groups []string, members bool) error {
		return svc.NotifyGroupsInTx(ctx, tx, groups, members)
	}
	cloud, err := controller.New(cfg, db, nil, log)
	if err != nil {
		return err
	}
	limits := httplimit.Limits{PerClient: f.perClient}
	svc, err = cluster.New(ctx, cluster.Config{
		DB: db, DataDir: e.dataDir, Ledger: cloud, Silences: cloud, Logger: log, Limits: limits,
		VMTypes:     func(context.Context) ([]nodeapi.VMType, error) { return cfg.VMTypes, nil },
		Blobs:       blobs.HandlerAt(nodeapi.PathBlobs),
		ServerNames: append(serverNames(cfg.Endpoint), f.serverNames...),
		Jobs:        jobs,
	})
	if err != nil {
		return err
	}
	cloud.SetPlacer(svc.Placer())
	cloud.SetNodeHealth(svc)

	admin, err := controller.EnsureAdmin(ctx, db)
	if err != nil {
		return err
	}
	// The admin's files follow its oldest active key (after a rotation,
	// the new one); with none active they are left as they are.
	creds := e.dir().Credentials(admin.Name)
	if admin.AccessKey == "" {
		log.Warn("the admin account has no active access key: its credentials are not rewritten; activate one or run 'ironbark key create admin'")
	} else if creds, err = controller.WriteCredentials(e.dataDir, admin, cfg.Endpoint, cfg.Region, svc.CA().CertPEM()); err != nil {
		return err
	}
	settings.Endpoint = cfg.Endpoint
	if err := controller.SaveSettings(e.dataDir, settings); err != nil {
		return err
	}
	key, err := controller.TokenKey(ctx, db)
	if err != nil {
		return err
	}
	cat, err := controller.OpenImageCatalog(ctx, db)
	if err != nil {
		return err
	}
	ops, err := operator.NewLocal(ctx, db, cat, blobs, cfg.VMTypes)
	if err != nil {
		return err
	}
	api := &http.Server{
		Handler: ec2.NewServer(ec2.Config{Handler: cloud, Credentials: cloud, Logger: log, TokenKey: key,
			Admin: operator.Admin{Source: ops}}),
		MaxHeaderBytes: ec2.MaxHeaderBytes, // an oversized query gets EC2's XML, not a plain 431
		ErrorLog:       slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		BaseContext:    func(net.Listener) context.Context { return ctx },
	}
	limits.Apply(api)
	apiLn := limits.Listener(ln, log.With("listener", "ec2"))
	if !f.plainHTTP {
		api.TLSConfig = svc.APITLSConfig()
		apiLn = tls.NewListener(apiLn, api.TLSConfig)
	}
	log.Info("controller started", "ec2", cfg.Endpoint, "node_api", nodeLn.Addr().String(), "store", db.Engine(),
		"data_dir", e.dataDir, "region", cfg.Region, "admin_credentials", filepath.Join(creds, "eucarc"))

	errc := make(chan error, 4)
	if f.debugListen != "" {
		dbg, err := debugServer(f.debugListen)
		if err != nil {
			return err
		}
		defer dbg.Close()
	}
	go func() {
		if err := api.Serve(apiLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("ec2 api: %w", err)
		}
	}()
	go func() { errc <- svc.Serve(ctx, nodeLn) }()
	go func() { errc <- svc.Run(ctx) }()
	go cloud.RunPurge(ctx, 10*time.Minute)
	go cloud.RunFailureChecks(ctx, 30*time.Second)
	go cloud.RunUsageRollup(ctx, time.Hour)
	if days := run.AuditRetentionDays; days > 0 {
		go cloud.RunAuditRetention(ctx, time.Hour, time.Duration(days)*24*time.Hour)
	}
	select {
	case <-ctx.Done():
	case err = <-errc:
		if err == nil && ctx.Err() == nil {
			err = errors.New("controller: a server stopped")
		}
	}
	log.Info("controller stopping")
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	jobs.Release(sctx) // another controller takes the periodic jobs at once
	if serr := api.Shutdown(sctx); serr != nil && err == nil {
		err = serr
	}
	return err
}

// endpointFor makes the EC2 URL from the listener's address; an
// unspecified host becomes the first non-loopback IPv4 address, or
// loopback when the machine has none.
func endpointFor(addr net.Addr, https bool) string {
	host, port, _ := net.SplitHostPort(addr.String())
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
		if addrs, err := net.InterfaceAddrs(); err == nil {
			for _, a := range addrs {
				if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() && !n.IP.IsLinkLocalUnicast() {
					host = n.IP.String()
					break
				}
			}
		}
	}
	if _, err := strconv.Atoi(port); err != nil {
		port = "8773"
	}
	scheme := "http"
	if https {
		scheme = "https"
	}
	return scheme + "://" + net.JoinHostPort(host, port) + "/"
}

// serverNames are the names the node API certificate should carry: the
// host of the EC2 endpoint (nodes reach both on the same machine).
func serverNames(endpoint string) []string {
	host := endpoint
	if u, err := urlHost(endpoint); err == nil {
		host = u
	}
	names := []string{host}
	if h, err := os.Hostname(); err == nil {
		names = append(names, h)
	}
	return names
}

func urlHost(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", err
	}
	return u.Hostname(), nil
}

func accountCreate(fs *flag.FlagSet) runFunc {
	return func(ctx context.Context, e *env) error { return createAccount(ctx, e, e.args[0]) }
}

func createAccount(ctx context.Context, e *env, name string) error {
	endpoint, region, caPEM, err := credentialSettings(e)
	if err != nil {
		return err
	}
	db, err := e.openStore(ctx, controller.Migrations())
	if err != nil {
		return err
	}
	a, err := controller.CreateAccount(ctx, db, name, false)
	if err != nil {
		return err
	}
	dir, err := controller.WriteCredentials(e.dataDir, a, endpoint, region, caPEM)
	if err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, dir)
	return nil
}

// debugServer serves net/http/pprof's handlers, and the goroutines'
// waits for a CPU (internal/schedwait), on addr.
func debugServer(addr string) (*http.Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("debug listener: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	// How long goroutines waited for a CPU (bench/scale reads it around
	// its paced launches).
	mux.HandleFunc("/debug/sched", schedwait.Handler)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return srv, nil
}
