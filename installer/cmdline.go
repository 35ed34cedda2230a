package installer

import (
	"errors"
	"fmt"
	"net"
	"strings"

	"ironbark/pxe/bootapi"
)

// Config is what the installer learns from the kernel command line.
type Config struct {
	URL     string // frontend's boot server, http://10.1.0.1:8080
	Host    string
	MAC     net.HardwareAddr
	IP      net.IP     // nil: use DHCP
	Mask    net.IPMask // with IP
	Gateway net.IP     // optional
	Attempt string
	Mode    string // install | rescue
	OnFail  string // reboot | halt | poweroff
	Finish  string // after a good install: reboot | kexec
	Disk    string // "" = first disk found
}

// ParseCmdline reads the installer's settings from /proc/cmdline text.
func ParseCmdline(s string) (Config, error) {
	args := map[string]string{}
	for _, f := range strings.Fields(s) {
		k, v, _ := strings.Cut(f, "=")
		args[k] = v
	}
	c := Config{
		URL:     strings.TrimRight(args[bootapi.ArgURL], "/"),
		Host:    args[bootapi.ArgHost],
		Attempt: args[bootapi.ArgAttempt],
		Mode:    args[bootapi.ArgMode],
		OnFail:  args[bootapi.ArgOnFail],
		Disk:    args[bootapi.ArgDisk],
		Finish:  args[bootapi.ArgFinish],
	}
	var errs []error
	if !strings.HasPrefix(c.URL, "http://") && !strings.HasPrefix(c.URL, "https://") {
		errs = append(errs, fmt.Errorf("%s=%q: want an http(s) URL", bootapi.ArgURL, c.URL))
	}
	if c.Host == "" {
		errs = append(errs, fmt.Errorf("%s missing", bootapi.ArgHost))
	}
	if c.Mode == "" {
		c.Mode = "install"
	}
	if c.Mode != "install" && c.Mode != "rescue" {
		errs = append(errs, fmt.Errorf("%s=%q: want install or rescue", bootapi.ArgMode, c.Mode))
	}
	if c.Mode == "install" && c.Attempt == "" {
		errs = append(errs, fmt.Errorf("%s missing", bootapi.ArgAttempt))
	}
	switch c.OnFail {
	case "":
		c.OnFail = "reboot"
	case "reboot", "halt", "poweroff":
	default:
		errs = append(errs, fmt.Errorf("%s=%q: want reboot, halt or poweroff", bootapi.ArgOnFail, c.OnFail))
	}
	switch c.Finish {
	case "":
		c.Finish = bootapi.FinishReboot
	case bootapi.FinishReboot, bootapi.FinishKexec:
	default:
		errs = append(errs, fmt.Errorf("%s=%q: want %s or %s", bootapi.ArgFinish, c.Finish, bootapi.FinishReboot, bootapi.FinishKexec))
	}
	if m := args[bootapi.ArgMAC]; m != "" {
		hw, err := net.ParseMAC(m)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", bootapi.ArgMAC, err))
		}
		c.MAC = hw
	}
	if ip := args[bootapi.ArgIP]; ip != "" {
		c.IP = net.ParseIP(ip).To4()
		mask := net.ParseIP(args[bootapi.ArgNetmask]).To4()
		if c.IP == nil || mask == nil {
			errs = append(errs, fmt.Errorf("%s=%q %s=%q: want IPv4 address and netmask",
				bootapi.ArgIP, ip, bootapi.ArgNetmask, args[bootapi.ArgNetmask]))
		} else {
			c.Mask = net.IPMask(mask)
		}
	}
	if gw := args[bootapi.ArgGateway]; gw != "" {
		c.Gateway = net.ParseIP(gw).To4()
	}
	return c, errors.Join(errs...)
}
