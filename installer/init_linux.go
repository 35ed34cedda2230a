package installer

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"ironbark/pxe/bootapi"
)

// Init is the installer's whole life as /init: set up, install (or
// rescue), report, and reboot, halt or power off. It only returns if the
// final reboot call fails. frontend runs the frontend installer when the
// command line asks for it; the node installer's binary passes nil.
func Init(ctx context.Context, frontend FrontendFunc) error {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	say := func(format string, a ...any) { fmt.Fprintf(os.Stderr, "ironbark-installer: "+format+"\n", a...) }
	if err := MountBasics(); err != nil {
		say("%v", err)
	}
	line, err := Cmdline()
	if err != nil {
		say("read kernel command line: %v; rebooting in 10 s", err)
		time.Sleep(10 * time.Second)
		return Finish("reboot")
	}
	if FrontendMode(line) {
		if frontend == nil {
			say("%s=frontend, but this is the node installer (the ISO carries the one built with -tags frontend); rebooting in 10 s", ArgMode)
			time.Sleep(10 * time.Second)
			return Finish("reboot")
		}
		return frontend(ctx, line)
	}
	cfg, err := ParseCmdline(line)
	if err != nil {
		say("bad kernel command line: %v; %s in 10 s", err, cfg.OnFail)
		time.Sleep(10 * time.Second)
		return Finish(cfg.OnFail)
	}
	fail := func(err error) error {
		say("FAILED: %v; %s", err, cfg.OnFail)
		time.Sleep(2 * time.Second)
		return Finish(cfg.OnFail)
	}
	if err := LoadModules(log); err != nil {
		return fail(err)
	}
	ip, err := Network(ctx, cfg, log)
	if err != nil {
		return fail(err)
	}
	in := &Installer{Config: cfg, Client: &http.Client{Timeout: 0}, Log: log.With("host", cfg.Host)}
	if cfg.Mode == "rescue" {
		say("rescue mode for %s at %s", cfg.Host, ip)
		Rescue(ctx, ip, log)
		return Finish("reboot")
	}
	say("installing %s from %s (attempt %s, address %s)", cfg.Host, cfg.URL, cfg.Attempt, net.IP(ip))
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	disk, err := FindDisk(dctx, cfg.Disk)
	cancel()
	if err != nil {
		_ = in.Report(ctx, failure(err))
		return fail(err)
	}
	if err := in.Run(ctx, disk); err != nil {
		return fail(err)
	}
	if cfg.Finish == bootapi.FinishKexec {
		e, err := FindBootEntry(disk)
		if err == nil {
			err = LoadKexec(disk, e)
		}
		if err == nil {
			say("install of %s done; starting its kernel %s (kexec)", cfg.Host, e.Kernel)
			err = Finish("kexec")
		}
		// Not fatal: the firmware boots the disk as well, only slower.
		say("kexec into the installed system: %v; rebooting instead", err)
	}
	say("install of %s done; rebooting", cfg.Host)
	return Finish("reboot")
}
