package iso

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// grubModules are what the UEFI loader needs to find the ISO 9660 volume
// (as a CD or, isohybrid, as a disk) and boot Linux from it.
var grubModules = []string{
	"part_msdos", "part_gpt", "iso9660", "fat", "search", "search_fs_file",
	"linux", "gzio", "normal", "configfile", "echo", "serial", "terminal",
	"efi_gop", "all_video", "test", "sleep",
}

// GrubEFIDir is where Debian's grub-efi-amd64-bin puts the modules.
const GrubEFIDir = "/usr/lib/grub/x86_64-efi"

// buildGrubEFI makes a standalone BOOTX64.EFI with grub-mkimage whose
// embedded config finds the volume holding the file idFile and boots the
// kernel from it. syslinux.efi cannot boot from El Torito, GRUB can, and
// GRUB reads ISO 9660 itself, so efiboot.img only holds this one binary.
func buildGrubEFI(out, idFile string, s Spec) error {
	if _, err := os.Stat(filepath.Join(GrubEFIDir, "linux.mod")); err != nil {
		return fmt.Errorf("iso: GRUB EFI modules missing (apt-get install grub-efi-amd64-bin grub-common): %w", err)
	}
	// GRUB runs this embedded config in its rescue context, where a
	// menu is not shown: it boots the default (first) entry; the others
	// are reached from the BIOS menu or over PXE.
	cfg := fmt.Sprintf(`serial --unit=0 --speed=115200
terminal_input serial console
terminal_output serial console
search --no-floppy --file --set=root %s
set timeout=0
echo "ironbark: loading %s from ($root)"
linux /boot/vmlinuz %s
initrd /boot/initrd.img
boot
`, idFile, s.entries()[0].Label, s.cmdline(s.entries()[0]))
	cfgPath := out + ".cfg"
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return fmt.Errorf("iso: %w", err)
	}
	defer os.Remove(cfgPath)
	args := append([]string{"-O", "x86_64-efi", "-d", GrubEFIDir, "-p", "/boot/grub", "-c", cfgPath, "-o", out}, grubModules...)
	if b, err := exec.Command("grub-mkimage", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("iso: grub-mkimage: %v: %s", err, b)
	}
	return nil
}
