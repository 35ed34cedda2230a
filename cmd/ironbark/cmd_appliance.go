package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"time"

	"ironbark/images/appliance"
	"ironbark/roll"
)

// listFlag is a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error { *l = append(*l, s); return nil }

// applianceBuildResult is what `appliance build --json` prints.
type applianceBuildResult struct {
	Appliance  string `json:"appliance"`
	Digest     string `json:"digest"`
	Size       int64  `json:"size"`
	BaseKey    string `json:"baseKey"`
	BaseCached bool   `json:"baseCached"`
	BootConfig string `json:"bootConfig"`
	Registered bool   `json:"registered"`
}

func applianceBuild(fs *flag.FlagSet) runFunc {
	var rolls, attrs listFlag
	fs.Var(&rolls, "roll", "roll directory or archive to build from (repeatable)")
	fs.Var(&attrs, "attr", "attribute KEY=VALUE for the profile (repeatable)")
	profile := fs.String("profile", "", "build this profile (JSON, as roll.Profile) instead of walking rolls")
	cache := fs.String("cache", "", "package and base tree cache (default <data-dir>/appliance-cache)")
	mirror := fs.String("mirror", appliance.DefaultMirror, "Debian archive")
	security := fs.String("security", "http://deb.debian.org/debian-security", "Debian security archive (\"\" for none)")
	kernel := fs.String("kernel", "", "unpacked kernel package for os busybox appliances (boot/vmlinuz-*, lib/modules)")
	sourceDir := fs.String("source-dir", "", "where <file src=bin/...> files come from (default: the directory above this binary's)")
	out := fs.String("out", "", "also keep the image at this path")
	epoch := fs.Int64("epoch", 0, "SOURCE_DATE_EPOCH for the image (default 2024-01-01)")
	refresh := fs.Bool("refresh", false, "rebuild the base tree from the archive even if one is cached")
	noRegister := fs.Bool("no-register", false, "only build (with --out): do not make it what the appliance installs")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	verbose := fs.Bool("v", false, "log each build step")
	return func(ctx context.Context, e *env) error {
		name := e.args[0]
		if *noRegister && *out == "" {
			return e.usagef("--no-register needs --out")
		}
		p, err := e.buildProfile(ctx, name, *profile, rolls, attrs)
		if err != nil {
			return err
		}
		c := appliance.Config{Profile: *p, CacheDir: *cache, Mirror: *mirror, Security: *security, Kernel: *kernel,
			SourceDir: *sourceDir, Refresh: *refresh}
		if c.CacheDir == "" {
			c.CacheDir = filepath.Join(e.dataDir, "appliance-cache")
		}
		if c.SourceDir == "" {
			if exe, err := os.Executable(); err == nil {
				c.SourceDir = filepath.Dir(filepath.Dir(exe))
			}
		}
		if *epoch != 0 {
			c.Epoch = time.Unix(*epoch, 0).UTC()
		}
		level := slog.LevelWarn
		if *verbose {
			level = slog.LevelInfo
		}
		c.Log = e.logger(level)
		c.Output = *out
		if c.Output == "" {
			if err := os.MkdirAll(c.CacheDir, 0o755); err != nil {
				return err
			}
			c.Output = filepath.Join(c.CacheDir, "."+name+".img")
			defer os.Remove(c.Output)
		}
		res, err := appliance.Build(ctx, c)
		if err != nil {
			return err
		}
		r := applianceBuildResult{Appliance: name, Digest: res.Digest, Size: res.Size, BaseKey: res.BaseKey,
			BaseCached: res.BaseCached, BootConfig: res.BootConfig}
		if !*noRegister {
			images, err := e.applianceImages(ctx)
			if err != nil {
				return err
			}
			if _, _, err := images.Set(ctx, name, c.Output); err != nil {
				return err
			}
			r.Registered = true
		}
		if *asJSON {
			return printJSON(e.stdout, r)
		}
		fmt.Fprintln(e.stdout, r.Digest)
		base := "built"
		if r.BaseCached {
			base = "cached"
		}
		if r.Registered {
			e.say("appliance %s installs %s (%d bytes; base %s %s, boot entries %s)", name, r.Digest, r.Size, r.BaseKey, base, r.BootConfig)
		} else {
			e.say("appliance %s built into %s: %s (%d bytes; base %s %s, boot entries %s)", name, c.Output, r.Digest, r.Size, r.BaseKey, base, r.BootConfig)
		}
		return nil
	}
}

// buildProfile is the profile `appliance build` builds: the enabled
// rolls' walk for the appliance (with its resolved attributes), or a
// walk of the rolls given with --roll, or a profile file; --attr values
// go on top.
func (e *env) buildProfile(ctx context.Context, name, file string, rolls, attrs []string) (*roll.Profile, error) {
	am := map[string]string{}
	for _, a := range attrs {
		k, v, ok := strings.Cut(a, "=")
		if !ok || k == "" {
			return nil, e.usagef("--attr %q: want KEY=VALUE", a)
		}
		am[k] = v
	}
	if file != "" {
		if len(rolls) > 0 {
			return nil, fmt.Errorf("--profile and --roll: give one")
		}
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, err
		}
		var p roll.Profile
		if err := json.Unmarshal(b, &p); err != nil {
			return nil, fmt.Errorf("profile %s: %w", file, err)
		}
		if len(am) > 0 {
			return nil, e.usagef("--attr does not apply to a --profile file (its files are already rendered)")
		}
		if p.Appliance != name {
			return nil, fmt.Errorf("profile %s is for appliance %q, not %q", file, p.Appliance, name)
		}
		return &p, nil
	}
	if len(rolls) == 0 {
		g, _, resolved, err := e.resolvedAttrs(ctx, name, "")
		if err != nil {
			return nil, err
		}
		maps.Copy(resolved, am)
		return g.Profile(name, resolved)
	}
	var rs []*roll.Roll
	for _, p := range rolls {
		r, err := roll.Open(p)
		if err != nil {
			return nil, err
		}
		rs = append(rs, r)
	}
	g, err := roll.Merge(rs...)
	if err != nil {
		return nil, err
	}
	return g.Profile(name, am)
}
