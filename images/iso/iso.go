package iso

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/diskfs/go-diskfs/filesystem/iso9660"

	"ironbark/images/disk"
)

// Spec describes the frontend ISO.
type Spec struct {
	Kernel  string // host path of the kernel (bzImage)
	Initrd  string // host path of the installer initramfs
	Cmdline string // kernel command line; "console=ttyS0 console=tty0" when empty
	// Entries are the boot menu's entries, the first the default; each
	// boots the kernel and initramfs with Cmdline plus its own Args.
	// Empty: one entry, "install", with Cmdline alone.
	Entries []Entry
	// Rolls is a host directory copied to rolls/ on the ISO (may be empty).
	Rolls string
	// Extra files: ISO path -> host path.
	Extra    map[string]string
	VolumeID string         // default "IRONBARK"
	Syslinux *disk.Syslinux // nil: disk.DebianSyslinux()
	Time     time.Time      // timestamps of generated files (zero: Unix epoch)
}

// Entry is one boot menu entry of the ISO.
type Entry struct {
	Label string // syslinux label: a word ("frontend", "node")
	Title string // what the menu shows
	Args  string // added to Spec.Cmdline
}

func (s Spec) entries() []Entry {
	if len(s.Entries) == 0 {
		return []Entry{{Label: "install", Title: "ironbark installer"}}
	}
	return s.Entries
}

// cmdline is the kernel command line of an entry.
func (s Spec) cmdline(e Entry) string { return strings.TrimSpace(s.Cmdline + " " + e.Args) }

// isolinuxConfig boots the first entry at once when it is the only one,
// else after two seconds in which the others can be chosen.
func (s Spec) isolinuxConfig() string {
	es := s.entries()
	var b strings.Builder
	fmt.Fprintf(&b, "SERIAL 0 115200\nDEFAULT %s\n", es[0].Label)
	if len(es) == 1 {
		b.WriteString("PROMPT 0\nTIMEOUT 0\n")
	} else {
		b.WriteString("PROMPT 1\nTIMEOUT 20\n")
		for _, e := range es {
			fmt.Fprintf(&b, "SAY   %-10s %s\n", e.Label, e.Title)
		}
	}
	for _, e := range es {
		fmt.Fprintf(&b, "\nLABEL %s\n  MENU LABEL %s\n  LINUX /boot/vmlinuz\n  INITRD /boot/initrd.img\n  APPEND %s\n", e.Label, e.Title, s.cmdline(e))
	}
	return b.String()
}

// Result describes the ISO written.
type Result struct {
	Size          int64
	IsolinuxLBA   uint32 // 2048-byte sectors
	EFIImageLBA   uint32
	EFIImageBytes int64
	catalogLBA    uint32
}

// Build writes the ISO to out; out appears only when complete.
func Build(ctx context.Context, out string, s Spec) (*Result, error) {
	if s.Kernel == "" || s.Initrd == "" {
		return nil, errors.New("iso: kernel and initramfs are required")
	}
	for _, p := range []string{s.Kernel, s.Initrd} {
		if st, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("iso: %w", err)
		} else if !st.Mode().IsRegular() {
			return nil, fmt.Errorf("iso: %s is not a regular file", p)
		}
	}
	if s.VolumeID == "" {
		s.VolumeID = "IRONBARK"
	}
	if s.Cmdline == "" {
		s.Cmdline = "console=tty0 console=ttyS0,115200"
	}
	if s.Time.IsZero() {
		s.Time = time.Unix(0, 0)
	}
	sl := s.Syslinux
	if sl == nil {
		var err error
		if sl, err = disk.DebianSyslinux(); err != nil {
			return nil, err
		}
	}
	ws, err := os.MkdirTemp(filepath.Dir(out), ".iso-workspace-*")
	if err != nil {
		return nil, fmt.Errorf("iso: %w", err)
	}
	defer os.RemoveAll(ws)

	if err := stage(ctx, ws, s, sl); err != nil {
		return nil, err
	}
	tmp, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".tmp-*")
	if err != nil {
		return nil, fmt.Errorf("iso: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	out9660 := newCoalescer(tmp)
	fsys, err := iso9660.Create(out9660, 0, 0, 2048, ws)
	if err != nil {
		return nil, fmt.Errorf("iso: create: %w", err)
	}
	err = fsys.Finalize(iso9660.FinalizeOptions{
		RockRidge:        true,
		VolumeIdentifier: s.VolumeID,
		ElTorito: &iso9660.ElTorito{
			BootCatalog: "isolinux/boot.cat",
			Entries: []*iso9660.ElToritoEntry{
				{Platform: iso9660.BIOS, Emulation: iso9660.NoEmulation, BootFile: "isolinux/isolinux.bin", BootTable: true, LoadSegment: 0},
				{Platform: iso9660.EFI, Emulation: iso9660.NoEmulation, BootFile: "boot/efiboot.img"},
			},
		},
	})
	if err == nil {
		err = out9660.Flush()
	}
	if err != nil {
		return nil, fmt.Errorf("iso: finalize: %w", err)
	}
	res := &Result{}
	if err := isohybrid(tmp, sl.IsoHdpfx, res, s.VolumeID); err != nil {
		return nil, err
	}
	if err := stabilize(tmp, res.catalogLBA, s.Time); err != nil {
		return nil, err
	}
	if err := tmp.Chmod(0o644); err != nil {
		return nil, err
	}
	if err := tmp.Sync(); err != nil {
		return nil, fmt.Errorf("iso: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("iso: %w", err)
	}
	if err := os.Rename(tmp.Name(), out); err != nil {
		return nil, fmt.Errorf("iso: %w", err)
	}
	ok = true
	return res, nil
}

// stage lays out the ISO tree in ws.
func stage(ctx context.Context, ws string, s Spec, sl *disk.Syslinux) error {
	isolinuxCfg := s.isolinuxConfig()
	for _, d := range []string{"isolinux", "boot", "rolls"} {
		if err := os.MkdirAll(filepath.Join(ws, d), 0o755); err != nil {
			return fmt.Errorf("iso: %w", err)
		}
	}
	links := map[string]string{
		"boot/vmlinuz":         s.Kernel,
		"boot/initrd.img":      s.Initrd,
		"isolinux/ldlinux.c32": sl.LDLinuxC,
	}
	for k, v := range s.Extra {
		p, err := disk.CleanPath(k)
		if err != nil {
			return fmt.Errorf("iso: extra file: %w", err)
		}
		links[p] = v
	}
	for dst, src := range links {
		if err := linkOrCopy(src, filepath.Join(ws, dst)); err != nil {
			return err
		}
	}
	// isolinux.bin is patched with the boot info table: always a copy.
	if err := copyFile(sl.Isolinux, filepath.Join(ws, "isolinux/isolinux.bin")); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(ws, "isolinux/isolinux.cfg"), []byte(isolinuxCfg), 0o644); err != nil {
		return fmt.Errorf("iso: %w", err)
	}
	// The UEFI boot image holds only GRUB, which finds this volume by an
	// id file and reads the kernel from ISO 9660.
	idFile := "/boot/ironbark-" + strings.ToLower(s.VolumeID) + ".id"
	if err := os.WriteFile(filepath.Join(ws, idFile), []byte(s.VolumeID+"\n"), 0o644); err != nil {
		return fmt.Errorf("iso: %w", err)
	}
	grubEFI := filepath.Join(ws, "..", filepath.Base(ws)+"-bootx64.efi")
	if err := os.MkdirAll(filepath.Join(ws, filepath.Dir(GrubConfigPath)), 0o755); err != nil {
		return fmt.Errorf("iso: %w", err)
	}
	if err := os.WriteFile(filepath.Join(ws, GrubConfigPath), []byte(s.grubConfig()), 0o644); err != nil {
		return fmt.Errorf("iso: %w", err)
	}
	if err := buildGrubEFI(grubEFI, idFile); err != nil {
		return err
	}
	defer os.Remove(grubEFI)
	efiFiles := []disk.FATFile{{Path: "EFI/BOOT/BOOTX64.EFI", Source: grubEFI}}
	content, err := disk.FilesSize(efiFiles)
	if err != nil {
		return err
	}
	// At least 8 MiB: FAT16 needs 4085 clusters.
	size := max((content+content/8+2<<20+1<<20-1)&^(1<<20-1), 8<<20)
	efi, err := os.Create(filepath.Join(ws, "boot/efiboot.img"))
	if err != nil {
		return fmt.Errorf("iso: %w", err)
	}
	defer efi.Close()
	if err := efi.Truncate(size); err != nil {
		return fmt.Errorf("iso: %w", err)
	}
	if err := disk.WriteFAT16(efi, 0, size, "EFIBOOT", efiFiles); err != nil {
		return fmt.Errorf("iso: efiboot.img: %w", err)
	}
	if err := disk.StabilizeFAT(efi, 0, s.Time); err != nil {
		return fmt.Errorf("iso: efiboot.img: %w", err)
	}
	if s.Rolls != "" {
		if err := copyTree(ctx, s.Rolls, filepath.Join(ws, "rolls")); err != nil {
			return err
		}
	}
	// Generated files get the fixed time.
	return filepath.WalkDir(ws, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || strings.HasPrefix(p, filepath.Join(ws, "isolinux")) || p == filepath.Join(ws, "boot/efiboot.img") || p == filepath.Join(ws, idFile) ||
			p == filepath.Join(ws, GrubConfigPath) {
			return os.Chtimes(p, s.Time, s.Time)
		}
		return nil
	})
}

func linkOrCopy(src, dst string) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("iso: %w", err)
	}
	if err := os.Link(src, dst); err == nil {
		return nil
	}
	return copyFile(src, dst)
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("iso: %w", err)
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return fmt.Errorf("iso: %w", err)
	}
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("iso: %w", err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("iso: copy %s: %w", src, err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("iso: %w", err)
	}
	return os.Chtimes(dst, st.ModTime(), st.ModTime())
}

// copyTree stages a host directory: regular files linked or copied,
// directories made, symlinks kept as symlinks.
func copyTree(ctx context.Context, src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("iso: rolls: %w", err)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(target, 0o755)
		case d.Type()&fs.ModeSymlink != 0:
			l, err := os.Readlink(p)
			if err != nil {
				return fmt.Errorf("iso: %w", err)
			}
			return os.Symlink(l, target)
		case d.Type().IsRegular():
			return linkOrCopy(p, target)
		}
		return nil // device nodes and the like have no place on the ISO
	})
}

// isohybrid writes the MBR that makes the ISO a bootable disk image:
// isohdpfx.bin's code, the isolinux.bin LBA it loads (in 512-byte
// sectors at offset 432), a partition covering the image (active, for
// BIOS) and an EFI system partition over efiboot.img (for UEFI firmware
// that boots the stick as a disk). The image is padded to a whole MiB.
func isohybrid(f *os.File, hdpfx string, res *Result, volumeID string) error {
	code, err := os.ReadFile(hdpfx)
	if err != nil {
		return fmt.Errorf("iso: isohybrid: %w", err)
	}
	if len(code) != 432 {
		return fmt.Errorf("iso: isohybrid: %s is %d bytes, want 432", hdpfx, len(code))
	}
	// Boot record volume descriptor (sector 17) -> boot catalog.
	brvd := make([]byte, 2048)
	if _, err := f.ReadAt(brvd, 17*2048); err != nil {
		return fmt.Errorf("iso: isohybrid: %w", err)
	}
	if brvd[0] != 0 || string(brvd[1:6]) != "CD001" || !strings.HasPrefix(string(brvd[7:]), "EL TORITO SPECIFICATION") {
		return errors.New("iso: isohybrid: no El Torito boot record at sector 17")
	}
	catLBA := binary.LittleEndian.Uint32(brvd[0x47:])
	res.catalogLBA = catLBA
	cat := make([]byte, 2048)
	if _, err := f.ReadAt(cat, int64(catLBA)*2048); err != nil {
		return fmt.Errorf("iso: isohybrid: %w", err)
	}
	if cat[0] != 1 || cat[0x1E] != 0x55 || cat[0x1F] != 0xAA || cat[0x20] != 0x88 {
		return errors.New("iso: isohybrid: bad boot catalog")
	}
	res.IsolinuxLBA = binary.LittleEndian.Uint32(cat[0x28:])
	// Section header at 0x40, its first entry at 0x60.
	if cat[0x40] == 0x91 || cat[0x40] == 0x90 {
		res.EFIImageLBA = binary.LittleEndian.Uint32(cat[0x68:])
	}
	isolinux := make([]byte, 0x44)
	if _, err := f.ReadAt(isolinux, int64(res.IsolinuxLBA)*2048); err != nil {
		return fmt.Errorf("iso: isohybrid: %w", err)
	}
	if binary.LittleEndian.Uint32(isolinux[0x40:]) != 0x7078c0fb {
		return errors.New("iso: isohybrid: isolinux.bin lacks the hybrid signature (syslinux 4 or later needed)")
	}
	st, err := f.Stat()
	if err != nil {
		return err
	}
	size := (st.Size() + 1<<20 - 1) &^ (1<<20 - 1)
	if err := f.Truncate(size); err != nil {
		return fmt.Errorf("iso: isohybrid: %w", err)
	}
	res.Size = size

	mbr := make([]byte, 512)
	copy(mbr, code)
	binary.LittleEndian.PutUint32(mbr[432:], res.IsolinuxLBA*4)
	// Disk signature from the volume id: stable across builds.
	var sig uint32 = 0x1b0b0000
	for _, c := range volumeID {
		sig = sig*31 + uint32(c)
	}
	binary.LittleEndian.PutUint32(mbr[440:], sig)
	entry := func(i int, active bool, typ byte, start, sectors uint32) {
		e := mbr[446+16*i : 446+16*(i+1)]
		if active {
			e[0] = 0x80
		}
		// CHS fields: the maximum, as for LBA-only partitions.
		e[1], e[2], e[3] = 0xFE, 0xFF, 0xFF
		e[4] = typ
		e[5], e[6], e[7] = 0xFE, 0xFF, 0xFF
		if start == 0 {
			e[1], e[2], e[3] = 0, 1, 0
		}
		binary.LittleEndian.PutUint32(e[8:], start)
		binary.LittleEndian.PutUint32(e[12:], sectors)
	}
	entry(0, true, 0x00, 0, uint32(size/512))
	if res.EFIImageLBA != 0 {
		efiSize, err := efiImageSize(f, res.EFIImageLBA)
		if err != nil {
			return err
		}
		res.EFIImageBytes = efiSize
		entry(1, false, 0xEF, res.EFIImageLBA*4, uint32((efiSize+511)/512))
	}
	mbr[510], mbr[511] = 0x55, 0xAA
	if _, err := f.WriteAt(mbr, 0); err != nil {
		return fmt.Errorf("iso: isohybrid: %w", err)
	}
	return nil
}

// efiImageSize reads the size of the FAT image at lba from its boot
// sector (total sectors * bytes per sector).
func efiImageSize(f *os.File, lba uint32) (int64, error) {
	bs := make([]byte, 512)
	if _, err := f.ReadAt(bs, int64(lba)*2048); err != nil {
		return 0, fmt.Errorf("iso: isohybrid: %w", err)
	}
	bps := int64(binary.LittleEndian.Uint16(bs[0x0B:]))
	total := int64(binary.LittleEndian.Uint16(bs[0x13:]))
	if total == 0 {
		total = int64(binary.LittleEndian.Uint32(bs[0x20:]))
	}
	if bps == 0 || bs[510] != 0x55 || bs[511] != 0xAA {
		return 0, errors.New("iso: isohybrid: efiboot.img is not a FAT image")
	}
	return total * bps, nil
}
