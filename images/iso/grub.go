package iso

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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

// GrubConfigPath is the UEFI boot menu on the ISO.
const GrubConfigPath = "boot/grub/grub.cfg"

// grubConfig is the UEFI boot menu: the same entries as the BIOS menu,
// the first the default, chosen after two seconds when there are more.
func (s Spec) grubConfig() string {
	es := s.entries()
	var b strings.Builder
	b.WriteString("serial --unit=0 --speed=115200\nterminal_input serial console\nterminal_output serial console\n")
	timeout := 2
	if len(es) == 1 {
		timeout = 0
	}
	fmt.Fprintf(&b, "set default=%s\nset timeout=%d\n", es[0].Label, timeout)
	for _, e := range es {
		fmt.Fprintf(&b, "\nmenuentry '%s' --id %s {\n  echo 'ironbark: loading %s'\n  linux /boot/vmlinuz %s\n  initrd /boot/initrd.img\n}\n",
			strings.ReplaceAll(e.Title, "'", ""), e.Label, e.Label, s.cmdline(e))
	}
	return b.String()
}

// buildGrubEFI makes a standalone BOOTX64.EFI with grub-mkimage whose
// embedded config finds the volume holding the file idFile and shows the
// menu in its /boot/grub/grub.cfg. syslinux.efi cannot boot from El
// Torito, GRUB can, and GRUB reads ISO 9660 itself, so efiboot.img only
// holds this one binary.
func buildGrubEFI(out, idFile string) error {
	if _, err := os.Stat(filepath.Join(GrubEFIDir, "linux.mod")); err != nil {
		return fmt.Errorf("iso: GRUB EFI modules missing (apt-get install grub-efi-amd64-bin grub-common): %w", err)
	}
	cfg := fmt.Sprintf(`search --no-floppy --file --set=root %s
set prefix=($root)/boot/grub
configfile ($root)/%s
`, idFile, GrubConfigPath)
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
