package pxe

import (
	"fmt"
	"strings"

	"ironbark/pxe/bootapi"
)

// ScriptConfig is what every generated iPXE script needs to know.
type ScriptConfig struct {
	BaseURL    string // http://10.1.0.1:8080, no trailing slash
	KernelArgs string // extra kernel args for the installer, e.g. console=ttyS0
	OnFail     string // installer's action after a failed install: reboot | halt | poweroff
	// Finish is the installer's way into the installed system after a
	// good install: bootapi.FinishKexec or FinishReboot ("" = reboot).
	Finish string
}

// iPXE's name for the device it booted from.
const ipxeNet = "netX"

// ChainScript is the first script an iPXE client gets: it chains to its
// own per-MAC script, so DHCP needs to hand out only one URL.
func ChainScript(c ScriptConfig) string {
	return fmt.Sprintf("#!ipxe\nchain --autofree %s%s${%s/mac}\n", c.BaseURL, bootapi.PathScript, ipxeNet)
}

// HostScript renders the iPXE script for a host's boot action. attempt is
// the install attempt id for install; unused otherwise.
func HostScript(c ScriptConfig, h Host, attempt string) string {
	var b strings.Builder
	b.WriteString("#!ipxe\n")
	switch h.Boot {
	case BootOS:
		fmt.Fprintf(&b, "echo ironbark: %s boots from its local disk\n", h.Name)
		// UEFI: leave iPXE; the firmware tries its next boot entry, the disk.
		// BIOS: hand over to the first hard disk's MBR.
		b.WriteString("iseq ${platform} efi && exit 1 ||\n")
		b.WriteString("sanboot --no-describe --drive 0x80\n")
	case BootInstall, BootRescue:
		mode := "install"
		if h.Boot == BootRescue {
			mode = "rescue"
		}
		onFail := c.OnFail
		if onFail == "" {
			onFail = "reboot"
		}
		fmt.Fprintf(&b, "echo ironbark: %s %s (attempt %s)\n", mode, h.Name, attempt)
		args := []string{
			"initrd=installer.img",
		}
		if c.KernelArgs != "" {
			args = append(args, c.KernelArgs)
		}
		args = append(args,
			kv(bootapi.ArgURL, c.BaseURL),
			kv(bootapi.ArgHost, h.Name),
			kv(bootapi.ArgMAC, h.MAC),
			kv(bootapi.ArgIP, "${"+ipxeNet+"/ip}"),
			kv(bootapi.ArgNetmask, "${"+ipxeNet+"/netmask}"),
			kv(bootapi.ArgGateway, "${"+ipxeNet+"/gateway}"),
			kv(bootapi.ArgAttempt, attempt),
			kv(bootapi.ArgMode, mode),
			kv(bootapi.ArgOnFail, onFail),
		)
		if c.Finish != "" && mode == "install" {
			args = append(args, kv(bootapi.ArgFinish, c.Finish))
		}
		fmt.Fprintf(&b, "kernel %s%s %s\n", c.BaseURL, bootapi.PathKernel, strings.Join(args, " "))
		fmt.Fprintf(&b, "initrd --name installer.img %s%s\n", c.BaseURL, bootapi.PathInitramfs)
		b.WriteString("boot\n")
	default:
		fmt.Fprintf(&b, "echo ironbark: %s has unknown boot action %q\nsleep 30\nreboot\n", h.Name, h.Boot)
	}
	return b.String()
}

// UnknownScript is served to a MAC that is not a host while discovery is
// off: it waits and asks again, so starting discovery later picks it up.
func UnknownScript(c ScriptConfig, mac string) string {
	return fmt.Sprintf("#!ipxe\necho ironbark: %s is not a known host and discovery is off; retrying in 30 s\n"+
		"sleep 30\nchain --autofree %s%s%s\n", mac, c.BaseURL, bootapi.PathScript, mac)
}

func kv(k, v string) string { return k + "=" + v }
