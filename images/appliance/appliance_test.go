package appliance_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"ironbark/images/appliance"
	"ironbark/images/internal/qemuboot"
	"ironbark/installer"
	"ironbark/internal/lab"
	"ironbark/pxe/bootapi"
	"ironbark/roll"
)

// labConfig is a lab appliance build into a fresh directory; cache is
// the build cache (t.TempDir() for a cold one).
func labConfig(t *testing.T, cache string) appliance.Config {
	t.Helper()
	lab.Require(t, "unshare", "chroot", "grub-mkimage", "cp")
	k := lab.GuestKernel(t)
	return appliance.Config{
		Profile:  labProfile(t),
		CacheDir: cache,
		Output:   filepath.Join(t.TempDir(), "lab.img"),
		Kernel:   k.Root,
		Busybox:  lab.Busybox(t),
	}
}

func labProfile(t *testing.T) roll.Profile {
	t.Helper()
	p, err := appliance.LabProfile()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func build(t *testing.T, c appliance.Config) *appliance.Result {
	t.Helper()
	res, err := appliance.Build(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// TestLabApplianceBoots builds the lab appliance and boots it from its
// own disk on BIOS and UEFI to its marker; the booted system shows the
// file, the appended line and the post script's result.
func TestLabApplianceBoots(t *testing.T) {
	c := labConfig(t, t.TempDir())
	res := build(t, c)
	if res.BootConfig != "generated" || len(res.Scripts) != 1 || !strings.Contains(res.Scripts[0].Output, "post script done") {
		t.Fatalf("result %+v", res)
	}
	drive := []string{"-drive", "file=" + c.Output + ",format=raw,if=virtio,snapshot=on"}
	for _, uefi := range []bool{false, true} {
		out := qemuboot.Boot(t, qemuboot.Options{Args: drive, UEFI: uefi, Marker: appliance.LabMarker, Timeout: 150 * time.Second})
		for _, want := range []string{"lab appliance: post ran as 0 in / / ironbark lab appliance", "root is UUID="} {
			if !strings.Contains(out, want) {
				t.Errorf("uefi=%v: console lacks %q:\n%s", uefi, want, out)
			}
		}
	}
}

// TestLabReproducibleAndCached: two cold builds give the same bytes; a
// warm build reuses the base and still gives them; changing one file
// changes the image but not the base.
func TestLabReproducibleAndCached(t *testing.T) {
	lab.Require(t, "sfdisk", "mdir", "mtype")
	c1 := labConfig(t, t.TempDir())
	r1 := build(t, c1)
	time.Sleep(1100 * time.Millisecond) // a different wall clock second must not matter
	c2 := labConfig(t, t.TempDir())
	r2 := build(t, c2)
	if r1.Digest != r2.Digest || r1.BaseCached || r2.BaseCached {
		t.Fatalf("cold builds: %s (cached %v) vs %s (cached %v)", r1.Digest, r1.BaseCached, r2.Digest, r2.BaseCached)
	}
	c3 := c1
	c3.Output = filepath.Join(t.TempDir(), "lab.img")
	r3 := build(t, c3)
	if !r3.BaseCached || r3.Digest != r1.Digest || r3.BaseKey != r1.BaseKey {
		t.Fatalf("warm build: cached %v digest %s key %s, want cached %s %s", r3.BaseCached, r3.Digest, r3.BaseKey, r1.Digest, r1.BaseKey)
	}
	// The ESP is partition 1, where the installer writes the identity.
	if err := installer.WriteFiles(c1.Output, []bootapi.File{{Path: "ironbark/node.json", Content: `{"hostname":"lab-0-0"}`}}); err != nil {
		t.Fatalf("installer.WriteFiles on the appliance image: %v", err)
	}
	parts, err := exec.Command("sfdisk", "--json", c1.Output).Output()
	if err != nil {
		t.Fatal(err)
	}
	var pt struct {
		PartitionTable struct {
			Partitions []struct {
				Start int64  `json:"start"`
				Type  string `json:"type"`
			} `json:"partitions"`
		} `json:"partitiontable"`
	}
	if err := json.Unmarshal(parts, &pt); err != nil || len(pt.PartitionTable.Partitions) != 3 {
		t.Fatalf("sfdisk --json: %v\n%s", err, parts)
	}
	for i, typ := range []string{"C12A7328-F81F-11D2-BA4B-00A0C93EC93B", "21686148-6449-6E6F-744E-656564454649", "0FC63DAF-8483-4772-8E79-3D69D8477DE4"} {
		if got := pt.PartitionTable.Partitions[i].Type; got != typ {
			t.Errorf("partition %d type %s, want %s", i+1, got, typ)
		}
	}
	esp := fmt.Sprintf("%s@@%d", c1.Output, pt.PartitionTable.Partitions[0].Start*512)
	if out, err := exec.Command("mtype", "-i", esp, "::ironbark/node.json").CombinedOutput(); err != nil || !strings.Contains(string(out), "lab-0-0") {
		t.Errorf("mtype node.json: %v %s", err, out)
	}
	if out, err := exec.Command("mdir", "-i", esp, "::EFI/BOOT").CombinedOutput(); err != nil || !strings.Contains(string(out), "BOOTX64") {
		t.Errorf("mdir EFI/BOOT: %v %s", err, out)
	}

	c4 := c1
	c4.Output = filepath.Join(t.TempDir(), "lab.img")
	c4.Profile.Files = append([]roll.File(nil), c1.Profile.Files...)
	c4.Profile.Files[1].Content = []byte("changed")
	r4 := build(t, c4)
	if !r4.BaseCached || r4.BaseKey != r1.BaseKey || r4.Digest == r1.Digest {
		t.Fatalf("one changed file: cached %v key %s digest %s (first %s)", r4.BaseCached, r4.BaseKey, r4.Digest, r1.Digest)
	}
}

// TestFailingScript: the error carries the script's output and its node
// file; the previous image at Output is untouched and no work tree is
// left in the cache.
func TestFailingScript(t *testing.T) {
	cache := t.TempDir()
	c := labConfig(t, cache)
	good := build(t, c)
	bad := c
	bad.Profile.Scripts = append(bad.Profile.Scripts, roll.Script{
		Origin: roll.Origin{Roll: "site", Node: "broken", Pos: "nodes/broken.xml:7"},
		Body:   "echo about to fail; echo oops >&2; exit 3\n",
	})
	_, err := appliance.Build(context.Background(), bad)
	var se *appliance.ScriptError
	if !errors.As(err, &se) {
		t.Fatalf("err = %v, want a ScriptError", err)
	}
	for _, want := range []string{"about to fail", "oops", "node broken", "roll site", "nodes/broken.xml:7", "exit status 3"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	if d := digestOf(t, c.Output); d != good.Digest {
		t.Errorf("previous image changed: %s, was %s", d, good.Digest)
	}
	if m, _ := filepath.Glob(filepath.Join(cache, "work-*")); len(m) > 0 {
		t.Errorf("work trees left behind: %v", m)
	}
}

func TestBadProfiles(t *testing.T) {
	base := appliance.Config{Profile: labProfile(t), CacheDir: t.TempDir(), Output: filepath.Join(t.TempDir(), "x.img"), Kernel: "/nonexistent"}
	for name, mut := range map[string]func(c *appliance.Config){
		"arch":           func(c *appliance.Config) { c.Profile.Arch = "aarch64" },
		"os":             func(c *appliance.Config) { c.Profile.OS = "centos" },
		"release":        func(c *appliance.Config) { c.Profile.OS, c.Profile.Release = "debian", "11" },
		"name":           func(c *appliance.Config) { c.Profile.Appliance = "../x" },
		"relative file":  func(c *appliance.Config) { c.Profile.Files = []roll.File{{Path: "etc/x"}} },
		"busybox+apt":    func(c *appliance.Config) { c.Profile.Packages = []roll.Package{{Name: "vim"}} },
		"escaping file":  func(c *appliance.Config) { c.Profile.Files = []roll.File{{Path: "/../etc/x"}} },
		"busybox kernel": func(c *appliance.Config) { c.Kernel = "" },
	} {
		t.Run(name, func(t *testing.T) {
			c := base
			c.Profile = labProfile(t)
			mut(&c)
			if _, err := appliance.Build(context.Background(), c); !errors.Is(err, appliance.ErrBadProfile) {
				t.Fatalf("err = %v, want ErrBadProfile", err)
			}
		})
	}
}

func digestOf(t *testing.T, p string) string {
	t.Helper()
	d, err := appliance.FileDigest(p)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

var _ = os.Remove
