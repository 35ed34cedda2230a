package rack

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"ironbark/installer/frontend"
	"ironbark/installer/frontend/frontendtest"
	"ironbark/internal/lab"
)

// shippedRolls are the built-in rolls the ISO carries and the answers
// name.
var shippedRolls = []string{"base", "frontend", "hypervisor-xen", "ironbark-node"}

// artifacts are what step 1 builds (or finds in the cache).
type artifacts struct {
	ironbark, installer, node string // binaries
	kernel                    *lab.Kernel
	compute                   string // the compute appliance image
	frontendImage             string
	answers                   string
	iso                       string
	key                       string // the ISO's cache key: the installed frontend disk's too
	sshKey                    string // the admin's private key (its .pub is in the answers)
	cached                    []string
}

// goBuild builds a command of the module into out. -buildvcs=false keeps
// the bytes the same for the same source, so the caches keyed by the
// binaries survive commits that change nothing they hold.
func goBuild(ctx context.Context, root, pkg, out string, cgo bool, tags ...string) error {
	args := []string{"build", "-buildvcs=false", "-o", out}
	if len(tags) > 0 {
		args = append(args, "-tags", strings.Join(tags, ","))
	}
	cmd := exec.CommandContext(ctx, "go", append(args, pkg)...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if cgo {
		cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
	}
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
	}
	return nil
}

// fileKey hashes files' contents (and names) into a short cache key.
func fileKey(parts ...string) (string, error) {
	h := sha256.New()
	for _, p := range parts {
		if strings.HasPrefix(p, "=") { // a literal, not a file
			fmt.Fprintf(h, "%s\n", p)
			continue
		}
		f, err := os.Open(p)
		if err != nil {
			return "", err
		}
		_, err = io.Copy(h, f)
		f.Close()
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "\n%s\n", filepath.Base(p))
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// build is step 1: binaries, the compute appliance, the frontend
// appliance, the answers and the ISO, each reused from the cache when
// its inputs did not change.
func (r *runner) build(ctx context.Context) (*artifacts, error) {
	c := r.cfg
	r.prune()
	// The binaries go into this run's directory (a parallel run may be
	// using the last ones); the caches below are keyed by their bytes.
	bin := filepath.Join(r.work, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return nil, err
	}
	a := &artifacts{ironbark: filepath.Join(bin, "ironbark"), installer: filepath.Join(bin, "ironbark-installer-iso"),
		node: filepath.Join(bin, "ironbark-node")}
	r.say("  go build: ironbark, ironbark-installer (-tags frontend), ironbark-node")
	for _, b := range []struct {
		pkg, out string
		cgo      bool
		tags     []string
	}{
		{"./cmd/ironbark", a.ironbark, false, nil},
		{"./cmd/ironbark-installer", a.installer, false, []string{"frontend"}},
		{"./cmd/ironbark-node", a.node, true, nil},
	} {
		if err := goBuild(ctx, c.Root, b.pkg, b.out, b.cgo, b.tags...); err != nil {
			return nil, err
		}
	}
	k, err := lab.CachedGuestKernel()
	if err != nil {
		return nil, fmt.Errorf("guest kernel: %w", err)
	}
	a.kernel = k

	// The compute appliance: Debian, Xen, libvirt, ironbark-node, from
	// the built-in rolls (embedded in ironbark); its package base is
	// cached by the appliance builder itself.
	key, err := fileKey(a.ironbark, a.node)
	if err != nil {
		return nil, err
	}
	a.compute = filepath.Join(c.Cache, "compute-"+key+".img")
	hit, err := r.cachedFile(a.compute, func(tmp string) error {
		r.say("  ironbark appliance build compute (Debian packages from the archive, cached in %s)", filepath.Join(lab.CacheDir(), "appliance"))
		data, err := os.MkdirTemp(c.Cache, "appliance-data-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(data)
		return r.command(ctx, a.ironbark, "appliance", "build", "compute", "--data-dir", data,
			"--cache", filepath.Join(lab.CacheDir(), "appliance"), "--source-dir", r.work,
			"--out", tmp, "--no-register")
	})
	if err != nil {
		return nil, fmt.Errorf("compute appliance: %w", err)
	}
	a.note(hit, "compute appliance "+a.compute)

	// The frontend appliance: the real one (Debian from the built-in
	// rolls' frontend appliance, with this static ironbark), or with
	// LabFrontend the lab one (busybox and the static ironbark).
	var fkey string
	if c.LabFrontend {
		if fkey, err = fileKey(a.ironbark, k.Vmlinuz, "="+frontendtest.LabFrontendInit(), "=ipxe-v1"); err != nil {
			return nil, err
		}
		a.frontendImage = filepath.Join(c.Cache, "frontend-lab-"+fkey+".img")
		hit, err = r.cachedFile(a.frontendImage, func(tmp string) error {
			bb, err := lab.StaticBusybox()
			if err != nil {
				return err
			}
			if err := os.MkdirAll(tmp, 0o755); err != nil {
				return err
			}
			img, err := frontendtest.BuildLabFrontendImage(tmp, k, bb, a.ironbark)
			if err != nil {
				return err
			}
			if err := os.Rename(img, tmp+".img"); err != nil {
				return err
			}
			os.RemoveAll(tmp)
			return os.Rename(tmp+".img", tmp)
		})
	} else {
		if fkey, err = fileKey(a.ironbark, "=frontend-appliance"); err != nil {
			return nil, err
		}
		a.frontendImage = filepath.Join(c.Cache, "frontend-"+fkey+".img")
		hit, err = r.cachedFile(a.frontendImage, func(tmp string) error {
			r.say("  ironbark appliance build frontend (Debian packages from the archive, cached in %s)", filepath.Join(lab.CacheDir(), "appliance"))
			data, err := os.MkdirTemp(c.Cache, "appliance-data-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(data)
			return r.command(ctx, a.ironbark, "appliance", "build", "frontend", "--data-dir", data,
				"--cache", filepath.Join(lab.CacheDir(), "appliance"), "--source-dir", r.work,
				"--out", tmp, "--no-register")
		})
	}
	if err != nil {
		return nil, fmt.Errorf("frontend appliance: %w", err)
	}
	a.note(hit, "frontend appliance "+a.frontendImage)

	// The admin's SSH key: made once, kept with the cache (the installed
	// frontend carries its public half).
	a.sshKey = filepath.Join(c.Cache, "admin_ed25519")
	if _, err := os.Stat(a.sshKey); err != nil {
		if out, err := exec.CommandContext(ctx, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "admin@ironbark-rack", "-f", a.sshKey).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("ssh-keygen: %v: %s", err, out)
		}
	}
	pub, err := os.ReadFile(a.sshKey + ".pub")
	if err != nil {
		return nil, err
	}
	ans := frontend.Defaults()
	ans.Cluster.Name, ans.Cluster.FQDN, ans.Cluster.Contact = "rack", "frontend.rack.example", "admin@rack.example"
	ans.Public.Interface, ans.Public.Address, ans.Public.Netmask, ans.Public.Gateway = "eth0", c.frontendAddr().String(), "255.255.255.0", c.Public.Addr().String()
	ans.Public.DNS = []string{c.Public.Addr().String()}
	ans.Private.Interface, ans.Private.Address, ans.Private.Netmask = "eth1", privateAddr, "255.255.255.0"
	ans.Private.Nodes = max(c.Nodes, 1)
	ans.Time.NTP = []string{c.Public.Addr().String()}
	ans.Admin.Password, ans.Admin.SSHKey = adminPassword, strings.TrimSpace(string(pub))
	ans.Disk.Device = "/dev/vda"
	ans.Rolls = shippedRolls
	// The password is hashed with a random salt: keep one answer file
	// per key, so the ISO's key stays the same from run to run. The key
	// names the hash scheme this installer writes, so a new scheme makes
	// new answers.
	h, err := frontend.HashPassword(adminPassword)
	if err != nil {
		return nil, err
	}
	scheme := strings.SplitN(h, "$", 3)
	akey, err := fileKey(a.sshKey+".pub", "="+c.Public.String(), "="+strings.Join(shippedRolls, ","), "="+strings.Join(scheme[:min(2, len(scheme))], "$"))
	if err != nil {
		return nil, err
	}
	a.answers = filepath.Join(c.Cache, "answers-"+akey+".yaml")
	if _, err := r.cachedFile(a.answers, func(tmp string) error {
		b, err := frontend.Marshal(ans)
		if err != nil {
			return err
		}
		return os.WriteFile(tmp, b, 0o600)
	}); err != nil {
		return nil, fmt.Errorf("answers: %w", err)
	}

	// The ISO: kernel, installer initramfs, frontend image, answers, and
	// the compute image carried for the frontend's PXE service.
	a.key, err = fileKey(a.installer, a.ironbark, k.Vmlinuz, a.answers, "="+filepath.Base(a.compute), "="+filepath.Base(a.frontendImage))
	if err != nil {
		return nil, err
	}
	a.iso = filepath.Join(c.Cache, "ironbark-"+a.key+".iso")
	hit, err = r.cachedFile(a.iso, func(tmp string) error {
		// The rolls the frontend was built from ride along (Rocks' roll
		// CDs); the installer checks the answers' rolls against them.
		rolls := filepath.Join(r.work, "rolls")
		for _, n := range shippedRolls {
			if err := os.CopyFS(filepath.Join(rolls, n), os.DirFS(filepath.Join(c.Root, "roll", "builtin", n))); err != nil {
				return fmt.Errorf("rolls: %w", err)
			}
		}
		r.say("  ironbark iso build (frontend installer, answers, rolls, compute appliance carried)")
		return r.command(ctx, a.ironbark, "iso", "build", "--out", tmp, "--rolls", rolls, "--kernel", k.Vmlinuz, "--modules", k.ModulesDir(),
			"--installer", a.installer, "--frontend-image", a.frontendImage, "--answers", a.answers,
			"--appliance", "compute="+a.compute, "--cmdline", "console=ttyS0,115200 panic=-1")
	})
	if err != nil {
		return nil, fmt.Errorf("iso: %w", err)
	}
	a.note(hit, "ISO "+a.iso)
	return a, nil
}

func (a *artifacts) note(hit bool, what string) {
	if hit {
		a.cached = append(a.cached, what)
	}
}
