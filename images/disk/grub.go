package disk

import (
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// GRUB makes a GPT disk bootable with Debian's GRUB 2 on BIOS and UEFI:
// boot.img in the MBR and core.img in a BIOS boot partition
// (grub-pc-bin), a standalone EFI/BOOT/BOOTX64.EFI on the ESP
// (grub-efi-amd64-bin). Both carry the same embedded config, which finds
// the root filesystem by its UUID and reads the rest from it, so kernels,
// initrds, Xen and grub.cfg stay in the root's /boot where Debian puts
// them. GRUB boots Linux (linux/initrd) and Xen (multiboot2/module2).
type GRUB struct {
	// Config runs after the prelude, which sets $root to the root
	// filesystem, $prefix to ($root)/boot/grub, the serial console, and
	// these variables for the boot entries:
	//   ironbark_root_partuuid  PARTUUID of the root partition
	//   ironbark_root_uuid      UUID of the root filesystem
	// Empty means "configfile /boot/grub/grub.cfg".
	Config string
	// PCDir and EFIDir hold GRUB's modules; empty means Debian's
	// /usr/lib/grub/i386-pc and /usr/lib/grub/x86_64-efi.
	PCDir, EFIDir string
}

// GRUB's directories in Debian 12.
const (
	GrubPCDir  = "/usr/lib/grub/i386-pc"
	GrubEFIDir = "/usr/lib/grub/x86_64-efi"
)

// grubModules are built into both loaders: nothing is read from the
// image's /boot/grub but grub.cfg, so the image needs no grub package.
var grubModules = []string{
	"part_gpt", "part_msdos", "ext2", "fat", "search", "search_fs_uuid", "search_fs_file",
	"search_label", "normal", "configfile", "linux", "multiboot2", "gzio", "xzio", "zstd",
	"echo", "test", "sleep", "serial", "terminal", "cat", "ls", "halt", "reboot", "boot",
	"loadenv", "regexp", "probe", "true",
}

var grubPCModules = []string{"biosdisk"}
var grubEFIModules = []string{"efi_gop", "efi_uga", "all_video"}

// bios_grub partition: GRUB's core.img lives here on GPT disks.
const biosBootSize = mib

// grubBIOSBootType is the GPT type of a BIOS boot partition.
const grubBIOSBootType = "21686148-6449-6E6F-744E-656564454649"

func (g *GRUB) dirs() (pc, efi string) {
	pc, efi = g.PCDir, g.EFIDir
	if pc == "" {
		pc = GrubPCDir
	}
	if efi == "" {
		efi = GrubEFIDir
	}
	return pc, efi
}

// check reports missing GRUB pieces before anything is written.
func (g *GRUB) check() error {
	pc, efi := g.dirs()
	for _, p := range []string{filepath.Join(pc, "boot.img"), filepath.Join(pc, "diskboot.img"), filepath.Join(pc, "linux.mod"), filepath.Join(efi, "linux.mod")} {
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("grub: %w (apt-get install grub-pc-bin grub-efi-amd64-bin grub-common)", err)
		}
	}
	if _, err := exec.LookPath("grub-mkimage"); err != nil {
		return fmt.Errorf("grub: %w (apt-get install grub-common)", err)
	}
	return nil
}

// embeddedConfig is the early config both loaders carry.
func (g *GRUB) embeddedConfig(rootFSUUID, rootPartUUID string) string {
	rest := g.Config
	if rest == "" {
		rest = "configfile /boot/grub/grub.cfg\n"
	}
	return fmt.Sprintf(`serial --unit=0 --speed=115200
terminal_input serial console
terminal_output serial console
search --no-floppy --fs-uuid --set=root %s
set prefix=($root)/boot/grub
set ironbark_root_uuid=%s
set ironbark_root_partuuid=%s
export ironbark_root_uuid
export ironbark_root_partuuid
%s`, rootFSUUID, rootFSUUID, rootPartUUID, rest)
}

// mkimage runs grub-mkimage for one target into dir/name.
func (g *GRUB) mkimage(dir, target, modDir, name, cfg string, extra []string) (string, error) {
	cfgPath := filepath.Join(dir, name+".cfg")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return "", fmt.Errorf("grub: %w", err)
	}
	out := filepath.Join(dir, name)
	args := []string{"-O", target, "-d", modDir, "-p", "/boot/grub", "-c", cfgPath, "-o", out}
	args = append(args, grubModules...)
	args = append(args, extra...)
	if b, err := exec.Command("grub-mkimage", args...).CombinedOutput(); err != nil {
		return "", fmt.Errorf("grub-mkimage -O %s: %v: %s", target, err, strings.TrimSpace(string(b)))
	}
	return out, nil
}

// Offsets in GRUB's i386-pc boot.img and diskboot.img (grub/boot/i386/pc).
const (
	grubBootKernelSector = 0x5c // u64: LBA of core.img's first sector
	grubBootDriveCheck   = 0x66 // 2 bytes: a jmp that NOPs enable for hard disks
	grubDiskbootBlocks   = 512 - 12
)

// installGRUBBIOS writes boot.img's code into the MBR (leaving the disk
// signature and partition table alone) and core.img at coreLBA, patched
// with its own location the way grub-bios-setup does.
func installGRUBBIOS(f *os.File, bootImg, coreImg string, coreLBA, room int64) error {
	boot, err := os.ReadFile(bootImg)
	if err != nil {
		return fmt.Errorf("grub: %w", err)
	}
	core, err := os.ReadFile(coreImg)
	if err != nil {
		return fmt.Errorf("grub: %w", err)
	}
	if len(boot) != 512 {
		return fmt.Errorf("grub: %s is %d bytes, want 512", bootImg, len(boot))
	}
	if int64(len(core)) > room {
		return fmt.Errorf("grub: core.img is %d bytes, the BIOS boot partition holds %d", len(core), room)
	}
	sectors := (len(core) + 511) / 512
	// diskboot.img (core.img's first sector) loads the rest from a
	// blocklist at its end: start LBA (u64), sector count (u16), segment.
	if n := binary.LittleEndian.Uint16(core[grubDiskbootBlocks+8:]); int(n) != sectors-1 {
		return fmt.Errorf("grub: core.img blocklist says %d sectors, the file has %d", n, sectors-1)
	}
	binary.LittleEndian.PutUint64(core[grubDiskbootBlocks:], uint64(coreLBA+1))
	if _, err := f.WriteAt(core, coreLBA*512); err != nil {
		return fmt.Errorf("grub: %w", err)
	}
	// Keep the MBR's own BPB bytes (0x03-0x5a) as grub-bios-setup does.
	mbrHead := make([]byte, 440)
	if _, err := f.ReadAt(mbrHead, 0); err != nil {
		return fmt.Errorf("grub: %w", err)
	}
	code := append([]byte(nil), boot[:440]...)
	copy(code[0x03:0x5a], mbrHead[0x03:0x5a])
	binary.LittleEndian.PutUint64(code[grubBootKernelSector:], uint64(coreLBA))
	code[grubBootDriveCheck], code[grubBootDriveCheck+1] = 0x90, 0x90
	if _, err := f.WriteAt(code, 0); err != nil {
		return fmt.Errorf("grub: %w", err)
	}
	return nil
}

func pcDirOf(g *GRUB) string { pc, _ := g.dirs(); return pc }
