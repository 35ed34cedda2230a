package disk

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/partition/gpt"
	"github.com/diskfs/go-diskfs/partition/mbr"

	"ironbark/internal/atomicfile"
)

// Table is a partition table type.
type Table string

const (
	GPT Table = "gpt"
	MBR Table = "mbr"
)

// Boot makes a disk bootable: syslinux on the EFI system partition loads
// Kernel and Initrd, on BIOS (boot code in the MBR, ldlinux.sys in the
// ESP) and on UEFI (EFI/BOOT/BOOTX64.EFI = syslinux.efi).
type Boot struct {
	Kernel, Initrd string // host files
	// Cmdline is the kernel command line. Unless it names root= itself,
	// root=PARTUUID=<root partition> is appended.
	Cmdline  string
	Syslinux *Syslinux // nil: DebianSyslinux()
}

// DiskSpec describes a whole-disk image: [ESP (FAT32)] + root partition.
type DiskSpec struct {
	Table    Table  // GPT (default) or MBR
	Size     int64  // whole disk; 0 computes it
	ESPSize  int64  // 0 computes it from the boot files
	Boot     *Boot  // syslinux boot of one kernel; nil: none
	GRUB     *GRUB  // GRUB on BIOS and UEFI reading the root's /boot (GPT only; not with Boot)
	Root     Source // root filesystem content
	RootType FSType // ext4 (default) or squashfs
	FS       FSOptions
}

// DiskResult describes what BuildDisk wrote.
type DiskResult struct {
	Size         int64
	Root         *Result
	RootPartUUID string // PARTUUID of the root partition as the kernel sees it
	ESPPartUUID  string // PARTUUID of the ESP (GPT)
	ESPStart     int64  // byte offsets (0 when absent)
	RootStart    int64
}

const (
	mib        = 1 << 20
	alignBytes = mib
)

// DiskIDs are the identifiers BuildDisk gives a GPT disk built with fs,
// known before it is written (e.g. for the tree's /etc/fstab).
type DiskIDs struct {
	RootFSUUID, RootPartUUID, ESPPartUUID string
}

// IDs returns the identifiers of a disk built with fs.
func IDs(fs FSOptions) DiskIDs {
	seed := seed0(fs)
	return DiskIDs{RootFSUUID: ext4UUID(fs).String(), RootPartUUID: SeedUUID(seed, "root-partition").String(),
		ESPPartUUID: SeedUUID(seed, "esp-partition").String()}
}

func seed0(fs FSOptions) string {
	fs.defaults()
	return fs.Seed
}

// BuildDisk writes a partitioned disk image to out (atomically).
func BuildDisk(ctx context.Context, out string, s DiskSpec) (*DiskResult, error) {
	var res *DiskResult
	err := atomicfile.WriteWith(out, 0o644, func(f *os.File) error {
		var err error
		res, err = writeDisk(ctx, f, s)
		return err
	})
	return res, err
}

func roundUp(n, to int64) int64 { return (n + to - 1) / to * to }

func writeDisk(ctx context.Context, f *os.File, s DiskSpec) (*DiskResult, error) {
	s.FS.defaults()
	if s.Table == "" {
		s.Table = GPT
	}
	if s.Table != GPT && s.Table != MBR {
		return nil, fmt.Errorf("unknown partition table %q (gpt, mbr)", s.Table)
	}
	if s.RootType == "" {
		s.RootType = FSExt4
	}
	if s.Root == nil {
		return nil, fmt.Errorf("disk: no root filesystem source")
	}
	var espFiles []FATFile
	var sl *Syslinux
	var grubCore string
	biosBoot := int64(0)
	rootPartUUID := SeedUUID(s.FS.Seed, "root-partition")
	if s.GRUB != nil {
		if s.Boot != nil {
			return nil, fmt.Errorf("disk: both syslinux and GRUB boot asked for")
		}
		if s.Table != GPT {
			return nil, fmt.Errorf("disk: GRUB boot needs a GPT disk")
		}
		if err := s.GRUB.check(); err != nil {
			return nil, err
		}
		tmp, err := os.MkdirTemp("", "ironbark-grub-*")
		if err != nil {
			return nil, fmt.Errorf("disk: %w", err)
		}
		defer os.RemoveAll(tmp)
		cfg := s.GRUB.embeddedConfig(ext4UUID(s.FS).String(), rootPartUUID.String())
		pcDir, efiDir := s.GRUB.dirs()
		if grubCore, err = s.GRUB.mkimage(tmp, "i386-pc", pcDir, "core.img", cfg, grubPCModules); err != nil {
			return nil, err
		}
		efi, err := s.GRUB.mkimage(tmp, "x86_64-efi", efiDir, "BOOTX64.EFI", cfg, grubEFIModules)
		if err != nil {
			return nil, err
		}
		espFiles = []FATFile{{Path: "EFI/BOOT/BOOTX64.EFI", Source: efi}}
		if s.ESPSize == 0 {
			if s.ESPSize, err = FATSize(espFiles); err != nil {
				return nil, err
			}
		}
		s.ESPSize = roundUp(s.ESPSize, alignBytes)
		biosBoot = biosBootSize
	}
	if s.Boot != nil {
		sl = s.Boot.Syslinux
		if sl == nil {
			var err error
			if sl, err = DebianSyslinux(); err != nil {
				return nil, err
			}
		}
		espFiles = []FATFile{
			{Path: "EFI/BOOT/BOOTX64.EFI", Source: sl.EFI64},
			{Path: "EFI/BOOT/ldlinux.e64", Source: sl.LDLinuxE},
			{Path: "vmlinuz", Source: s.Boot.Kernel},
		}
		if s.Boot.Initrd != "" {
			espFiles = append(espFiles, FATFile{Path: "initrd.img", Source: s.Boot.Initrd})
		}
		if s.ESPSize == 0 {
			var err error
			if s.ESPSize, err = FATSize(espFiles); err != nil {
				return nil, err
			}
		}
		s.ESPSize = roundUp(s.ESPSize, alignBytes)
	}

	// Root size: what the source needs, or the rest of a given disk.
	u, err := Measure(ctx, s.Root)
	if err != nil {
		return nil, err
	}
	// Layout: [ESP][BIOS boot][root]. The ESP stays partition 1, where
	// the installer writes the node's identity.
	first := int64(alignBytes)
	biosBootStart := first + s.ESPSize
	tail := int64(alignBytes) // room for the backup GPT
	rootStart := biosBootStart + biosBoot
	var rootSize int64
	if s.Size == 0 {
		if s.RootType == FSSquashfs {
			rootSize = roundUp(u.Bytes+u.Bytes/8+int64(u.Files+u.Dirs+u.Symlinks)*256+mib, alignBytes)
		} else {
			rootSize = Ext4Size(u)
		}
		s.Size = rootStart + rootSize + tail
	} else {
		s.Size = roundUp(s.Size, 512)
		rootSize = (s.Size - tail - rootStart) / alignBytes * alignBytes
		if rootSize <= 0 {
			return nil, fmt.Errorf("disk: %w: %d MiB leaves no room for a root partition", ErrTooSmall, s.Size>>20)
		}
		if s.RootType == FSExt4 {
			if err := fits(u, rootSize); err != nil {
				return nil, err
			}
		}
	}
	if err := f.Truncate(s.Size); err != nil {
		return nil, fmt.Errorf("disk: %w", err)
	}
	res := &DiskResult{Size: s.Size, RootStart: rootStart}
	if s.ESPSize > 0 {
		res.ESPStart = first
	}

	// Partition table.
	d, err := diskfs.OpenBackend(file.New(f, false), diskfs.WithSectorSize(512))
	if err != nil {
		return nil, fmt.Errorf("disk: %w", err)
	}
	seed := s.FS.Seed
	switch s.Table {
	case GPT:
		t := &gpt.Table{LogicalSectorSize: 512, PhysicalSectorSize: 512, ProtectiveMBR: true,
			GUID: strings.ToUpper(SeedUUID(seed, "gpt-disk").String())}
		idx := 1
		espAttrs := uint64(0)
		if s.Boot != nil {
			espAttrs = 1 << 2
		}
		if s.ESPSize > 0 {
			t.Partitions = append(t.Partitions, &gpt.Partition{Index: idx, Start: uint64(first / 512), Size: uint64(s.ESPSize),
				Type: gpt.EFISystemPartition, Name: "EFI System", GUID: strings.ToUpper(SeedUUID(seed, "esp-partition").String()),
				Attributes: espAttrs}) // legacy BIOS bootable: gptmbr.bin boots this one
			res.ESPPartUUID = SeedUUID(seed, "esp-partition").String()
			idx++
		}
		if biosBoot > 0 {
			t.Partitions = append(t.Partitions, &gpt.Partition{Index: idx, Start: uint64(biosBootStart / 512), Size: uint64(biosBoot),
				Type: gpt.Type(grubBIOSBootType), Name: "BIOS boot", GUID: strings.ToUpper(SeedUUID(seed, "bios-boot-partition").String())})
			idx++
		}
		t.Partitions = append(t.Partitions, &gpt.Partition{Index: idx, Start: uint64(rootStart / 512), Size: uint64(rootSize),
			Type: gpt.LinuxFilesystem, Name: "root", GUID: strings.ToUpper(rootPartUUID.String())})
		if err := d.Partition(t); err != nil {
			return nil, fmt.Errorf("disk: gpt: %w", err)
		}
		res.RootPartUUID = rootPartUUID.String()
	case MBR:
		t := &mbr.Table{LogicalSectorSize: 512, PhysicalSectorSize: 512}
		if s.ESPSize > 0 {
			t.Partitions = append(t.Partitions, &mbr.Partition{Bootable: true, Type: mbr.Fat32LBA,
				Start: uint32(first / 512), Size: uint32(s.ESPSize / 512)})
		}
		t.Partitions = append(t.Partitions, &mbr.Partition{Type: mbr.Linux, Start: uint32(rootStart / 512), Size: uint32(rootSize / 512)})
		if err := d.Partition(t); err != nil {
			return nil, fmt.Errorf("disk: mbr: %w", err)
		}
		sig := binary.LittleEndian.Uint32(rootPartUUID[:4])
		if _, err := f.WriteAt(binary.LittleEndian.AppendUint32(nil, sig), 440); err != nil {
			return nil, fmt.Errorf("disk: %w", err)
		}
		res.RootPartUUID = fmt.Sprintf("%08x-%02d", sig, len(t.Partitions))
	}

	// Root filesystem.
	switch s.RootType {
	case FSExt4:
		res.Root, err = WriteExt4(ctx, f, rootStart, rootSize, s.Root, s.FS)
	default:
		return nil, fmt.Errorf("disk: root type %q: only ext4 is supported inside a disk image (use BuildFilesystem for squashfs)", s.RootType)
	}
	if err != nil {
		return nil, err
	}

	if s.GRUB != nil {
		if err := WriteFAT32(f, first, s.ESPSize, "ESP", espFiles); err != nil {
			return nil, err
		}
		if err := StabilizeFAT(f, first, s.FS.Time); err != nil {
			return nil, err
		}
		if err := installGRUBBIOS(f, filepath.Join(pcDirOf(s.GRUB), "boot.img"), grubCore, biosBootStart/512, biosBoot); err != nil {
			return nil, err
		}
	}

	// Boot pieces.
	if s.Boot != nil {
		cmdline := s.Boot.Cmdline
		if !strings.Contains(" "+cmdline, " root=") {
			cmdline = strings.TrimSpace(cmdline + " root=PARTUUID=" + res.RootPartUUID)
		}
		cfg := syslinuxConfig(cmdline, s.Boot.Initrd != "")
		espFiles = append(espFiles,
			FATFile{Path: "EFI/BOOT/syslinux.cfg", Data: cfg},
			FATFile{Path: "syslinux.cfg", Data: cfg})
		if err := WriteFAT32(f, first, s.ESPSize, "ESP", espFiles); err != nil {
			return nil, err
		}
		code := sl.GPTMBR
		if s.Table == MBR {
			code = sl.MBR
		}
		if err := placeBootCode(f, code); err != nil {
			return nil, err
		}
		if err := f.Sync(); err != nil {
			return nil, err
		}
		if err := installSyslinuxBIOS(f.Name(), first, s.FS.Time.Unix()); err != nil {
			return nil, err
		}
		if err := StabilizeFAT(f, first, s.FS.Time); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// syslinuxConfig is the one-entry syslinux.cfg shared by BIOS and UEFI.
func syslinuxConfig(cmdline string, initrd bool) []byte {
	var b strings.Builder
	b.WriteString("SERIAL 0 115200\nDEFAULT linux\nPROMPT 0\nTIMEOUT 0\n\nLABEL linux\n  LINUX /vmlinuz\n")
	if initrd {
		b.WriteString("  INITRD /initrd.img\n")
	}
	fmt.Fprintf(&b, "  APPEND %s\n", cmdline)
	return []byte(b.String())
}
