package disk

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
)

// Syslinux locates the boot pieces of Debian's syslinux packages
// (syslinux-common, syslinux-efi, isolinux).
type Syslinux struct {
	MBR      string // mbr.bin: MBR boot code, 440 bytes
	GPTMBR   string // gptmbr.bin: boot code for GPT disks (legacy BIOS bootable partition)
	EFI64    string // syslinux.efi for x86-64 UEFI
	LDLinuxE string // ldlinux.e64, loaded by syslinux.efi
	Isolinux string // isolinux.bin
	LDLinuxC string // ldlinux.c32, loaded by isolinux.bin
	IsoHdpfx string // isohdpfx.bin: isohybrid MBR
}

// DebianSyslinux returns the Debian 12 paths, checking that they exist.
func DebianSyslinux() (*Syslinux, error) {
	s := &Syslinux{
		MBR:      "/usr/lib/syslinux/mbr/mbr.bin",
		GPTMBR:   "/usr/lib/syslinux/mbr/gptmbr.bin",
		EFI64:    "/usr/lib/SYSLINUX.EFI/efi64/syslinux.efi",
		LDLinuxE: "/usr/lib/syslinux/modules/efi64/ldlinux.e64",
		Isolinux: "/usr/lib/ISOLINUX/isolinux.bin",
		LDLinuxC: "/usr/lib/syslinux/modules/bios/ldlinux.c32",
		IsoHdpfx: "/usr/lib/ISOLINUX/isohdpfx.bin",
	}
	for _, p := range []string{s.MBR, s.GPTMBR, s.EFI64, s.LDLinuxE, s.Isolinux, s.LDLinuxC, s.IsoHdpfx} {
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("syslinux boot files: %w (apt-get install syslinux-common syslinux-efi isolinux)", err)
		}
	}
	return s, nil
}

// placeBootCode copies the 440 bytes of MBR boot code to the start of f,
// leaving the disk signature and the partition table alone.
func placeBootCode(f *os.File, bin string) error {
	b, err := os.ReadFile(bin)
	if err != nil {
		return fmt.Errorf("boot code: %w", err)
	}
	if len(b) > 440 {
		return fmt.Errorf("boot code %s: %d bytes, want at most 440", bin, len(b))
	}
	if _, err := f.WriteAt(b, 0); err != nil {
		return fmt.Errorf("boot code: %w", err)
	}
	return nil
}

// installSyslinuxBIOS runs `syslinux --install --offset` on the FAT at
// offset: it writes ldlinux.sys and ldlinux.c32 and the FAT boot sector's
// loader. mtools stamps the files with SOURCE_DATE_EPOCH.
func installSyslinuxBIOS(img string, offset int64, epoch int64) error {
	cmd := exec.Command("syslinux", "--install", "--offset", strconv.FormatInt(offset, 10), img)
	cmd.Env = append(os.Environ(), "SOURCE_DATE_EPOCH="+strconv.FormatInt(epoch, 10), "MTOOLS_SKIP_CHECK=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("syslinux --install %s: %v: %s", filepath.Base(img), err, out)
	}
	return nil
}
