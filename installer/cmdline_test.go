package installer

import (
	"strings"
	"testing"
)

func TestParseCmdline(t *testing.T) {
	c, err := ParseCmdline("BOOT_IMAGE=x initrd=installer.img console=ttyS0 ironbark.url=http://10.1.0.1:8080/ " +
		"ironbark.host=compute-0-1 ironbark.mac=52:54:00:1b:00:02 ironbark.ip=10.1.0.129 ironbark.netmask=255.255.255.0 " +
		"ironbark.gw= ironbark.attempt=abc123 ironbark.mode=install ironbark.onfail=poweroff\n")
	if err != nil {
		t.Fatal(err)
	}
	if c.URL != "http://10.1.0.1:8080" || c.Host != "compute-0-1" || c.MAC.String() != "52:54:00:1b:00:02" ||
		c.IP.String() != "10.1.0.129" || c.Mask.String() != "ffffff00" || c.Gateway != nil ||
		c.Attempt != "abc123" || c.OnFail != "poweroff" || c.Finish != "reboot" {
		t.Fatalf("%+v", c)
	}
	// No address: the installer uses DHCP.
	c, err = ParseCmdline("ironbark.url=http://fe ironbark.host=h ironbark.attempt=a")
	if err != nil || c.IP != nil || c.OnFail != "reboot" || c.Mode != "install" {
		t.Fatalf("%+v %v", c, err)
	}
	for _, bad := range []string{
		"",
		"ironbark.url=ftp://x ironbark.host=h ironbark.attempt=a",
		"ironbark.url=http://x ironbark.attempt=a",
		"ironbark.url=http://x ironbark.host=h",
		"ironbark.url=http://x ironbark.host=h ironbark.attempt=a ironbark.ip=10.1.0.5",
		"ironbark.url=http://x ironbark.host=h ironbark.attempt=a ironbark.onfail=explode",
		"ironbark.url=http://x ironbark.host=h ironbark.attempt=a ironbark.mac=zz",
		"ironbark.url=http://x ironbark.host=h ironbark.attempt=a ironbark.finish=poweroff",
	} {
		if _, err := ParseCmdline(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	c, err = ParseCmdline("ironbark.url=http://fe ironbark.host=h ironbark.attempt=a ironbark.finish=kexec")
	if err != nil || c.Finish != "kexec" {
		t.Fatalf("%+v %v", c, err)
	}
	// Rescue needs no attempt.
	if _, err := ParseCmdline("ironbark.url=http://x ironbark.host=h ironbark.mode=rescue"); err != nil {
		t.Fatal(err)
	}
}

func FuzzParseCmdline(f *testing.F) {
	f.Add("ironbark.url=http://10.1.0.1:8080 ironbark.host=compute-0-0 ironbark.attempt=a ironbark.ip=10.1.0.5 ironbark.netmask=255.255.255.0")
	f.Add("ironbark.mac=52:54:00:00:00:01 ironbark.mode=rescue ironbark.onfail=halt")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseCmdline(s)
		if err == nil && (c.Host == "" || !strings.HasPrefix(c.URL, "http")) {
			t.Fatalf("accepted without host or URL: %+v", c)
		}
	})
}
