package frontend

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/partition/gpt"
	"github.com/google/uuid"

	"ironbark/images/disk"
	"ironbark/internal/datadir"
)

// Step is one thing the install does. Its String reads like the shell
// command it stands for, so the log reads like a script.
type Step struct {
	Name string // short, for progress and failures: "write appliance"
	Cmd  string
	// Run does the step; it reports bytes through p when it moves many.
	Run func(ctx context.Context, p *Meter) error
}

func (s Step) String() string { return s.Cmd }

// Progress is what the screens show while the install runs.
type Progress struct {
	Step        string
	Index, Of   int   // step number (1-based) of how many
	Done, Total int64 // bytes, when the step moves bytes
	Rate        float64
	ETA         time.Duration
	Finished    bool // the whole install is done
}

// Meter counts a step's bytes and reports them.
type Meter struct {
	base   Progress
	start  time.Time
	last   time.Time
	report func(Progress)
}

// Total sets how many bytes the step will move.
func (m *Meter) Total(n int64) { m.base.Total = n }

// Add counts n more bytes.
func (m *Meter) Add(n int64) {
	m.base.Done += n
	now := time.Now()
	if now.Sub(m.last) < 100*time.Millisecond && m.base.Done < m.base.Total {
		return
	}
	m.last = now
	if el := now.Sub(m.start).Seconds(); el > 0 {
		m.base.Rate = float64(m.base.Done) / el
		if m.base.Rate > 0 && m.base.Total > m.base.Done {
			m.base.ETA = time.Duration(float64(m.base.Total-m.base.Done) / m.base.Rate * float64(time.Second))
		} else {
			m.base.ETA = 0
		}
	}
	if m.report != nil {
		m.report(m.base)
	}
}

// StepError says which step failed.
type StepError struct {
	Index, Of int
	Step      Step
	Err       error
}

func (e *StepError) Error() string {
	return fmt.Sprintf("step %d of %d (%s: %s) failed: %v; the disk has no partition table yet, so nothing boots from it: fix the cause and install again",
		e.Index, e.Of, e.Step.Name, e.Step.Cmd, e.Err)
}

func (e *StepError) Unwrap() error { return e.Err }

// Plan is the install, computed from the answers, before anything runs.
type Plan struct {
	Answers   Answers
	Image     Image
	Layout    ImageLayout
	Target    Disk
	DataStart int64 // bytes
	DataSize  int64
	Steps     []Step
	// Stage is where the data partition's files are staged (a temp dir
	// when empty).
	Stage string
	// InstallerDir is Medium.InstallerDir: the node installer copied to
	// the data partition for PXE ("": none).
	InstallerDir string
	// Carried are appliance images from the medium for the image store
	// (carried.go).
	Carried []CarriedAppliance
}

// dataLabel names the data partition and its filesystem; the frontend's
// boot mounts it at /var/lib/ironbark.
const dataLabel = "ironbark-data"

// NewPlan lays the install out: the appliance's partitions where the image
// has them, the data partition after them.
func NewPlan(a Answers, im Image, target Disk) (*Plan, error) {
	l, err := im.Layout()
	if err != nil {
		return nil, err
	}
	p := &Plan{Answers: a, Image: im, Layout: l, Target: target}
	p.DataStart = alignUp(l.Size)
	end := (target.Size - 1<<20) &^ (1<<20 - 1) // the backup GPT lives in the last MiB
	p.DataSize = end - p.DataStart
	if a.Disk.DataSize != "" && a.Disk.DataSize != "rest" {
		n, err := ParseSize(a.Disk.DataSize)
		if err != nil {
			return nil, err
		}
		p.DataSize = min(p.DataSize, alignUp(n))
	}
	if p.DataSize < MinDataSize {
		return nil, fmt.Errorf("disk %s (%s) is too small: the appliance takes %s and the data partition needs %s",
			target.Path, human(target.Size), human(l.Size), human(MinDataSize))
	}
	hasESP := false
	for _, ip := range l.Partitions {
		hasESP = hasESP || gpt.Type(ip.Type) == gpt.EFISystemPartition
	}
	if !hasESP {
		return nil, errors.New("appliance image: no EFI system partition: it cannot boot")
	}
	dev := target.Path
	dataPart := fmt.Sprintf("%s%d", dev, len(l.Partitions)+1)
	p.Steps = []Step{
		{Name: "wipe", Cmd: fmt.Sprintf("wipefs --all %s  # zero the first and last MiB: no old partition table survives", dev), Run: p.wipe},
		{Name: "write appliance", Cmd: fmt.Sprintf("zstdcat -f %s | dd of=%s bs=1M skip=1 seek=1  # %s, its partition table held back", im.Path, dev, human(l.Size)), Run: p.writeImage},
		{Name: "write configuration", Cmd: fmt.Sprintf("mkfs.ext4 -L %s -d <frontend.json controller.json ironbark.db(cluster0) ...> %s  # %s for /var/lib/ironbark", dataLabel, dataPart, human(p.DataSize)), Run: p.writeData},
		{Name: "partition", Cmd: fmt.Sprintf("sgdisk --clear %s  # GPT: %s, %s", dev, p.partNames(), dataLabel), Run: p.partition},
		{Name: "boot loader", Cmd: fmt.Sprintf("dd if=%s of=%s bs=440 count=1  # the image's BIOS boot code; UEFI: \\EFI\\BOOT\\BOOTX64.EFI on the ESP", im.Path, dev), Run: p.bootLoader},
	}
	return p, nil
}

// tableStep is the index of the step that writes the partition table.
func (p *Plan) tableStep() int {
	for i, s := range p.Steps {
		if s.Name == "partition" {
			return i
		}
	}
	return len(p.Steps)
}

func (p *Plan) partNames() string {
	var n []string
	for _, pt := range p.Layout.Partitions {
		n = append(n, pt.Name)
	}
	return strings.Join(n, ", ")
}

// Run runs the steps in order, logging each; the first failure stops it
// and says which step failed.
func (p *Plan) Run(ctx context.Context, log *slog.Logger, report func(Progress)) error {
	for i, s := range p.Steps {
		base := Progress{Step: s.Name, Index: i + 1, Of: len(p.Steps)}
		if report != nil {
			report(base)
		}
		log.Info("install step", "step", i+1, "of", len(p.Steps), "name", s.Name, "cmd", s.Cmd)
		start := time.Now()
		m := &Meter{base: base, start: start, report: report}
		if err := ctx.Err(); err != nil {
			return &StepError{i + 1, len(p.Steps), s, err}
		}
		if err := s.Run(ctx, m); err != nil {
			log.Error("install step failed", "step", i+1, "name", s.Name, "err", err)
			if i >= p.tableStep() {
				// The table is out: take it back, so a half-made disk
				// never looks installed.
				if werr := p.wipe(ctx, m); werr != nil {
					log.Error("could not clear the partition table after the failure", "err", werr)
				}
			}
			return &StepError{i + 1, len(p.Steps), s, err}
		}
		log.Info("install step done", "step", i+1, "name", s.Name, "took", time.Since(start).Round(time.Millisecond))
	}
	if report != nil {
		report(Progress{Step: "done", Index: len(p.Steps), Of: len(p.Steps), Finished: true})
	}
	return nil
}

func (p *Plan) open() (*os.File, error) {
	f, err := os.OpenFile(p.Target.Path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", p.Target.Path, err)
	}
	return f, nil
}

func (p *Plan) wipe(ctx context.Context, m *Meter) error {
	f, err := p.open()
	if err != nil {
		return err
	}
	defer f.Close()
	zero := make([]byte, 1<<20)
	for _, off := range []int64{0, p.Target.Size - int64(len(zero))} {
		if _, err := f.WriteAt(zero, off); err != nil {
			return fmt.Errorf("zero %s at %d: %w", p.Target.Path, off, err)
		}
	}
	return f.Sync()
}

func (p *Plan) writeImage(ctx context.Context, m *Meter) error {
	r, err := p.Image.open()
	if err != nil {
		return err
	}
	defer r.Close()
	f, err := p.open()
	if err != nil {
		return err
	}
	defer f.Close()
	m.Total(p.Layout.Size)
	if _, err := io.CopyN(io.Discard, r, headLen); err != nil {
		return fmt.Errorf("read image: %w", err)
	}
	m.Add(headLen)
	off := int64(headLen)
	buf := make([]byte, 4<<20)
	for off < p.Layout.Size {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, rerr := io.ReadFull(r, buf[:min(int64(len(buf)), p.Layout.Size-off)])
		if n > 0 {
			// Skip writing zeros: the image is sparse and the disk's old
			// contents there do not matter (the filesystems are the image's).
			if _, err := f.WriteAt(buf[:n], off); err != nil {
				return fmt.Errorf("write %s at %d: %w", p.Target.Path, off, err)
			}
			off += int64(n)
			m.Add(int64(n))
		}
		if rerr != nil {
			if off < p.Layout.Size {
				return fmt.Errorf("image ended at %d of %d bytes: %w", off, p.Layout.Size, rerr)
			}
			break
		}
	}
	// The image's own backup GPT is not at the end of this disk: clear it
	// so no tool mistakes it for this disk's table.
	if _, err := f.WriteAt(make([]byte, 33*sector), p.Layout.Size-33*sector); err != nil {
		return err
	}
	return f.Sync()
}

func (p *Plan) writeData(ctx context.Context, m *Meter) error {
	stage := p.Stage
	if stage == "" {
		d, err := os.MkdirTemp("", "ironbark-data-*")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		stage = d
	}
	if err := StageDataDir(ctx, stage, p.Answers); err != nil {
		return fmt.Errorf("stage the configuration: %w", err)
	}
	if p.InstallerDir != "" {
		if err := stagePXEBoot(stage, p.InstallerDir); err != nil {
			return fmt.Errorf("stage the node installer: %w", err)
		}
	}
	carried, err := stageCarried(ctx, stage, p.Carried)
	if err != nil {
		return fmt.Errorf("stage the carried appliances: %w", err)
	}
	var total int64
	for _, c := range carried {
		total += c.size
	}
	if total > 1<<20 {
		m.Total(total) // progress: the carried images dominate this step
	}
	f, err := p.open()
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := disk.WriteExt4(ctx, f, p.DataStart, p.DataSize, withCarried{disk.DirSource(stage), carried, m},
		disk.FSOptions{Label: dataLabel, Seed: uuid.NewString(), Time: time.Now()}); err != nil {
		return fmt.Errorf("data filesystem: %w", err)
	}
	return f.Sync()
}

// partition writes the GPT: this is when the disk starts to look
// installed, so it comes after everything it points at is written.
func (p *Plan) partition(ctx context.Context, m *Meter) error {
	d, err := diskfs.Open(p.Target.Path, diskfs.WithOpenMode(diskfs.ReadWrite), diskfs.WithSectorSize(512))
	if err != nil {
		return fmt.Errorf("open %s: %w", p.Target.Path, err)
	}
	defer d.Close()
	t := &gpt.Table{LogicalSectorSize: sector, PhysicalSectorSize: sector, ProtectiveMBR: true, GUID: p.Layout.DiskGUID}
	for i, ip := range p.Layout.Partitions {
		t.Partitions = append(t.Partitions, &gpt.Partition{Index: i + 1, Start: ip.First, End: ip.Last,
			Size: (ip.Last - ip.First + 1) * sector, Type: gpt.Type(ip.Type), Name: ip.Name, GUID: ip.GUID, Attributes: ip.Attributes})
	}
	t.Partitions = append(t.Partitions, &gpt.Partition{Index: len(t.Partitions) + 1, Start: uint64(p.DataStart / sector),
		End: uint64((p.DataStart+p.DataSize)/sector - 1), Size: uint64(p.DataSize), Type: gpt.LinuxFilesystem,
		Name: dataLabel, GUID: strings.ToUpper(uuid.NewString())})
	if err := d.Partition(t); err != nil {
		return fmt.Errorf("write GPT on %s: %w", p.Target.Path, err)
	}
	return nil
}

// bootLoader puts the image's BIOS boot code in the MBR (GRUB's boot.img,
// which loads core.img from the BIOS boot partition, in the appliance
// images; syslinux's gptmbr.bin in the lab ones). UEFI needs
// nothing more: the ESP carries \EFI\BOOT\BOOTX64.EFI, the removable-media
// path firmware boots without an NVRAM entry.
func (p *Plan) bootLoader(ctx context.Context, m *Meter) error {
	f, err := p.open()
	if err != nil {
		return err
	}
	if _, err := f.WriteAt(p.Layout.BootCode, 0); err != nil {
		f.Close()
		return fmt.Errorf("BIOS boot code: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// stagePXEBoot copies the medium's node installer into the data dir's
// PXE boot files (vmlinuz, installer.img), as `ironbark pxe setup` would
// make them: the installed frontend installs nodes from its first boot.
func stagePXEBoot(stage, from string) error {
	dir := datadir.Dir(stage).PXEBoot()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	for src, dst := range map[string]string{InstallerKernel: "vmlinuz", InstallerInitrd: "installer.img"} {
		in, err := os.Open(filepath.Join(from, src))
		if err != nil {
			return err
		}
		out, err := os.OpenFile(filepath.Join(dir, dst), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
		if err != nil {
			in.Close()
			return err
		}
		_, err = io.Copy(out, in)
		in.Close()
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("%s: %w", src, err)
		}
	}
	return nil
}
