package frontend

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Medium is what the installer boots from: the appliance image and the
// rolls it carries (the ISO, or files given on the command line).
type Medium struct {
	Image Image
	// RollsDir holds one directory or file per roll; "" means the medium
	// carries no rolls list and the answers' rolls are not checked.
	RollsDir string
	// InstallerDir holds the node installer the medium boots
	// (InstallerKernel, InstallerInitrd: the ISO's /boot); the install
	// makes them what the frontend's PXE serves to the nodes. "": none.
	InstallerDir string
	// Appliances are the node appliance images the medium carries
	// (ReadManifest); the install makes each what its appliance installs.
	Appliances []CarriedAppliance
}

// The node installer's files in Medium.InstallerDir.
const (
	InstallerKernel = "vmlinuz"
	InstallerInitrd = "initrd.img"
)

// Rolls lists the rolls on the medium (nil when it has no rolls dir).
func (md Medium) Rolls() ([]string, error) {
	if md.RollsDir == "" {
		return nil, nil
	}
	ents, err := os.ReadDir(md.RollsDir)
	if err != nil {
		return nil, fmt.Errorf("rolls on the medium: %w", err)
	}
	out := []string{}
	for _, e := range ents {
		n := strings.TrimSuffix(e.Name(), filepath.Ext(e.Name()))
		out = append(out, n)
	}
	sort.Strings(out)
	return out, nil
}

// Check validates the answers against the machine and the medium and
// computes the plan; nothing is written.
func Check(a Answers, m Machine, md Medium) (*Plan, error) {
	l, err := md.Image.Layout()
	if err != nil {
		return nil, err
	}
	rolls, err := md.Rolls()
	if err != nil {
		return nil, err
	}
	if err := Validate(&a, m, Need{ImageSize: l.Size, Rolls: rolls}); err != nil {
		return nil, err
	}
	d, err := FindDisk(m, a.Disk.Device)
	if err != nil {
		return nil, err
	}
	p, err := NewPlan(a, md.Image, d)
	if err != nil {
		return nil, err
	}
	p.InstallerDir = md.InstallerDir
	p.Carried = md.Appliances
	var carried int64
	for _, c := range md.Appliances {
		carried += c.Size
	}
	if carried > 0 && p.DataSize < MinDataSize+carried {
		return nil, fmt.Errorf("disk %s (%s) is too small: the data partition gets %s and must hold the %s of appliance images the medium carries besides %s",
			d.Path, human(d.Size), human(p.DataSize), human(carried), human(MinDataSize))
	}
	return p, nil
}

// Install is the one path of both the screens and the answer file: check,
// then run the steps. report may be nil.
func Install(ctx context.Context, a Answers, m Machine, md Medium, log *slog.Logger, report func(Progress)) error {
	p, err := Check(a, m, md)
	if err != nil {
		return err
	}
	log.Info("installing the frontend", "name", a.Cluster.Name, "disk", p.Target.Path, "image", md.Image.Path,
		"dataBytes", p.DataSize)
	return p.Run(ctx, log, report)
}

// DefaultImage is where the installer finds the frontend appliance image:
// on the ISO, mounted at /run/ironbark/medium by the installer's /init.
const DefaultImage = "/run/ironbark/medium/images/frontend.img"
