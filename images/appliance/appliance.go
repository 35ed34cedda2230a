package appliance

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"ironbark/images/disk"
	"ironbark/roll"
)

// OS values a profile may name.
const (
	OSDebian  = "debian"  // mmdebstrap from Debian's archive
	OSBusybox = "busybox" // the lab: the host's busybox-static and Config.Kernel, no packages
)

// DefaultMirror is Debian's archive.
const DefaultMirror = "http://deb.debian.org/debian"

// Config is one build.
type Config struct {
	Profile roll.Profile
	// CacheDir keeps downloaded packages and base trees between builds
	// (required). Tests use /var/cache/ironbark-lab/appliance, the
	// frontend <data dir>/appliance-cache.
	CacheDir string
	// Output is the disk image to write; it appears only when complete.
	Output string
	// Mirror is the Debian archive; empty means DefaultMirror. Security
	// updates come from Security when set (e.g.
	// http://deb.debian.org/debian-security).
	Mirror, Security string
	// Variant is mmdebstrap's --variant; empty means "essential" (the
	// packages a profile lists come on top of it).
	Variant string
	// Epoch is SOURCE_DATE_EPOCH: every time in the image is at most
	// this. Zero means 2024-01-01T00:00:00Z.
	Epoch time.Time
	// Kernel is an unpacked Debian kernel package (boot/vmlinuz-VERSION
	// and lib/modules/VERSION with modules.dep) for OSBusybox profiles.
	Kernel string
	// Busybox is the static busybox for OSBusybox; empty means the host's
	// /bin/busybox (busybox-static).
	Busybox string
	// SourceDir supplies the files a profile names by Source with no
	// content (<file src="bin/ironbark-node"> in a built-in roll): Source
	// is read relative to it. The CLI passes the directory above its own
	// bin/.
	SourceDir string
	// Size of the disk image; 0 computes it from the content.
	Size int64
	// Refresh builds the base tree again even when one is cached (to
	// pick up archive updates).
	Refresh bool
	Log     *slog.Logger
}

// Result says what Build made.
type Result struct {
	Output string
	Digest string // sha256:<hex> of the image
	Size   int64
	// BaseKey names the cached base tree; BaseCached says whether it was
	// reused rather than built.
	BaseKey    string
	BaseCached bool
	// BootConfig is where the boot entries came from: "profile" (the
	// profile wrote /boot/grub/grub.cfg) or "generated".
	BootConfig   string
	RootPartUUID string
	// Scripts holds each post script's output, in order.
	Scripts []ScriptRun
}

// ScriptRun is one post script that ran.
type ScriptRun struct {
	roll.Origin
	Output string
}

// PackageError is a package Debian does not have (or cannot install),
// with apt's message and the roll and node that asked for it.
type PackageError struct {
	Package roll.Package
	Apt     string // apt's lines about this package
}

func (e *PackageError) Error() string {
	return fmt.Sprintf("package %s (roll %s, node %s, %s): %s", e.Package.Name, e.Package.Roll, e.Package.Node, e.Package.Pos, e.Apt)
}

// ScriptError is a post script that failed, with its output (Error
// shows its last 40 lines).
type ScriptError struct {
	Script roll.Script
	Output string
	Err    error
}

func (e *ScriptError) Error() string {
	return fmt.Sprintf("post script of node %s (roll %s, %s) failed: %v\n%s", e.Script.Node, e.Script.Roll, e.Script.Pos, e.Err, tailLines(e.Output, 40))
}

func (e *ScriptError) Unwrap() error { return e.Err }

// ErrBadProfile is returned for a profile the builder cannot build.
var ErrBadProfile = errors.New("bad profile")

var applianceName = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}$`)

func (c *Config) check() error {
	p := &c.Profile
	if !applianceName.MatchString(p.Appliance) {
		return fmt.Errorf("%w: appliance name %q (lowercase letters, digits, -)", ErrBadProfile, p.Appliance)
	}
	switch p.Arch {
	case "", "x86_64", "amd64":
	default:
		return fmt.Errorf("%w: appliance %s is for arch %s; this builder makes x86_64 images", ErrBadProfile, p.Appliance, p.Arch)
	}
	switch p.OS {
	case "", OSDebian:
		switch p.Release {
		case "", "12", "bookworm":
		default:
			return fmt.Errorf("%w: appliance %s is for Debian release %s; this builder makes Debian 12 (bookworm)", ErrBadProfile, p.Appliance, p.Release)
		}
	case OSBusybox:
		if len(p.Packages) > 0 {
			pk := p.Packages[0]
			return fmt.Errorf("%w: package %s (roll %s, node %s, %s): os busybox has no packages", ErrBadProfile, pk.Name, pk.Roll, pk.Node, pk.Pos)
		}
		if c.Kernel == "" {
			return fmt.Errorf("%w: os busybox needs a kernel (Config.Kernel)", ErrBadProfile)
		}
	default:
		return fmt.Errorf("%w: appliance %s: unknown os %q (debian, busybox)", ErrBadProfile, p.Appliance, p.OS)
	}
	if c.CacheDir == "" || c.Output == "" {
		return errors.New("appliance build: CacheDir and Output are required")
	}
	for _, f := range p.Files {
		if !strings.HasPrefix(f.Path, "/") {
			return fmt.Errorf("%w: file %q (roll %s, node %s, %s): path must be absolute", ErrBadProfile, f.Path, f.Roll, f.Node, f.Pos)
		}
		if _, err := disk.CleanPath(f.Path); err != nil {
			return fmt.Errorf("%w: file (roll %s, node %s, %s): %v", ErrBadProfile, f.Roll, f.Node, f.Pos, err)
		}
	}
	return nil
}

func (c *Config) defaults() {
	if c.Mirror == "" {
		c.Mirror = DefaultMirror
	}
	if c.Variant == "" {
		c.Variant = "essential"
	}
	if c.Epoch.IsZero() {
		c.Epoch = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	if c.Busybox == "" {
		c.Busybox = "/bin/busybox"
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.Profile.OS == "" {
		c.Profile.OS = OSDebian
	}
}

// Build makes the appliance's disk image: base tree (cached), files,
// post scripts, boot config, disk. On any error Output is untouched.
func Build(ctx context.Context, c Config) (*Result, error) {
	c.defaults()
	if err := c.check(); err != nil {
		return nil, err
	}
	log := c.Log.With("appliance", c.Profile.Appliance)
	for _, d := range []string{c.CacheDir, filepath.Dir(c.Output)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("appliance build: %w", err)
		}
	}
	base, err := c.base(ctx, log)
	if err != nil {
		return nil, err
	}
	res := &Result{Output: c.Output, BaseKey: base.key, BaseCached: base.cached}

	defer base.unlock()
	tree, done, err := workTree(ctx, c.CacheDir, base, log)
	if err != nil {
		return nil, err
	}
	defer done()

	if err := applyFiles(tree, c.SourceDir, c.Profile.Files); err != nil {
		return nil, err
	}
	if res.Scripts, err = runScripts(ctx, tree, c.Profile.Scripts, c.Epoch, log); err != nil {
		return nil, err
	}
	if res.BootConfig, err = bootConfig(tree, &c.Profile); err != nil {
		return nil, err
	}
	fsOpts := disk.FSOptions{Label: "root", Seed: "ironbark-appliance:" + c.Profile.Appliance, Time: c.Epoch,
		KeepOwners: true, ClampTimes: true, Logger: log}
	if err := writeFstab(tree, disk.IDs(fsOpts)); err != nil {
		return nil, err
	}
	start := time.Now()
	d, err := disk.BuildDisk(ctx, c.Output, disk.DiskSpec{
		Table: disk.GPT, Size: c.Size, Root: disk.DirSource(tree), FS: fsOpts, GRUB: &disk.GRUB{},
	})
	if err != nil {
		return nil, fmt.Errorf("appliance %s: %w", c.Profile.Appliance, err)
	}
	log.Info("disk written", "output", c.Output, "size", d.Size, "took", time.Since(start).Round(time.Millisecond))
	res.Size, res.RootPartUUID = d.Size, d.RootPartUUID
	if res.Digest, err = FileDigest(c.Output); err != nil {
		return nil, err
	}
	return res, nil
}

// FileDigest is sha256:<hex> of a file, the form the blob store uses.
func FileDigest(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("digest %s: %w", p, err)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}
