package frontend

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"

	"ironbark/internal/atomicfile"
)

// The installed frontend is the frontend appliance image (the same
// bytes on every frontend) plus the data partition the installer wrote.
// At every boot, before the network comes up, `ironbark frontend setup`
// (the ironbark-frontend-setup unit of the frontend roll) makes the
// system what DATA/frontend.json says: systemd-networkd files for the
// public interface and each cluster's private interface, the host name,
// DNS, time zone and NTP, root's password (the admin's) and the admin's
// SSH key.

// NetworkDir is where the setup writes its systemd-networkd files;
// ones named *ironbark-* there that the configuration no longer names
// are removed.
const NetworkDir = "/etc/systemd/network"

// LoadConfig reads DATA/frontend.json.
func LoadConfig(dataDir string) (Config, error) {
	var c Config
	b, err := os.ReadFile(filepath.Join(dataDir, "frontend.json"))
	if err != nil {
		return c, fmt.Errorf("frontend configuration: %w", err)
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("frontend configuration %s: %w", filepath.Join(dataDir, "frontend.json"), err)
	}
	if c.Version != Version {
		return c, fmt.Errorf("frontend configuration: version %d, this ironbark reads %d", c.Version, Version)
	}
	if c.Public.Interface == "" || len(c.Clusters) == 0 {
		return c, errors.New("frontend configuration: no public interface or no cluster")
	}
	return c, nil
}

// SystemFile is one file the setup writes.
type SystemFile struct {
	Path    string // absolute, in the installed system
	Mode    os.FileMode
	Content string
}

// NetworkFiles are the systemd-networkd files of c: the public interface
// (static or DHCP) and each cluster's private interface, which PXE
// serves: up without a carrier and not waited for by
// network-online.target.
func (c Config) NetworkFiles() []SystemFile {
	const head = "# written at boot by `ironbark frontend setup` from /var/lib/ironbark/frontend.json\n"
	var pub strings.Builder
	fmt.Fprintf(&pub, "%s[Match]\nName=%s\n\n[Network]\n", head, c.Public.Interface)
	if c.Public.DHCP {
		pub.WriteString("DHCP=ipv4\n")
	} else {
		fmt.Fprintf(&pub, "Address=%s\n", c.Public.Address)
		if c.Public.Gateway != "" {
			fmt.Fprintf(&pub, "Gateway=%s\n", c.Public.Gateway)
		}
		for _, d := range c.Public.DNS {
			fmt.Fprintf(&pub, "DNS=%s\n", d)
		}
	}
	files := []SystemFile{{Path: path.Join(NetworkDir, "10-ironbark-public.network"), Mode: 0o644, Content: pub.String()}}
	for i, cl := range c.Clusters {
		files = append(files, SystemFile{
			Path: path.Join(NetworkDir, fmt.Sprintf("%d-ironbark-%s.network", 20+i, cl.Name)), Mode: 0o644,
			Content: fmt.Sprintf("%s# cluster %s: its nodes PXE-boot here\n[Match]\nName=%s\n\n[Link]\nRequiredForOnline=no\n\n[Network]\nAddress=%s\nConfigureWithoutCarrier=yes\nIPv6AcceptRA=no\n",
				head, cl.Name, cl.PXEInterface, cl.Address),
		})
	}
	return files
}

// SystemFiles are every file the setup writes, besides /etc/shadow and
// root's authorized_keys, which it edits.
func (c Config) SystemFiles() []SystemFile {
	files := c.NetworkFiles()
	short, _, _ := strings.Cut(c.FQDN, ".")
	files = append(files,
		SystemFile{Path: "/etc/hostname", Mode: 0o644, Content: short + "\n"},
		SystemFile{Path: "/etc/timezone", Mode: 0o644, Content: c.TimeZone + "\n"})
	hosts := "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
	if !c.Public.DHCP {
		hosts += fmt.Sprintf("%s\t%s %s\n", strings.Split(c.Public.Address, "/")[0], c.FQDN, short)
	} else {
		hosts += fmt.Sprintf("127.0.1.1\t%s %s\n", c.FQDN, short)
	}
	files = append(files, SystemFile{Path: "/etc/hosts", Mode: 0o644, Content: hosts})
	if !c.Public.DHCP && len(c.Public.DNS) > 0 {
		var r strings.Builder
		for _, d := range c.Public.DNS {
			fmt.Fprintf(&r, "nameserver %s\n", d)
		}
		files = append(files, SystemFile{Path: "/etc/resolv.conf", Mode: 0o644, Content: r.String()})
	}
	// chrony: the answers' servers, and time for the clusters' nodes.
	var ntp strings.Builder
	ntp.WriteString("# written at boot by `ironbark frontend setup`\n")
	for _, s := range c.NTP {
		fmt.Fprintf(&ntp, "server %s iburst\n", s)
	}
	for _, cl := range c.Clusters {
		fmt.Fprintf(&ntp, "allow %s\n", maskedPrefix(cl.Address))
	}
	files = append(files, SystemFile{Path: "/etc/chrony/conf.d/ironbark-frontend.conf", Mode: 0o644, Content: ntp.String()})
	return files
}

// maskedPrefix is 10.1.1.1/24's network, 10.1.1.0/24 (s itself when it
// does not parse).
func maskedPrefix(s string) string {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return s
	}
	return p.Masked().String()
}

// ApplySystem makes the system under root (/ on the frontend, a temp dir
// in tests) what c says. It is run at every boot and is idempotent.
func ApplySystem(root string, c Config, log *slog.Logger) error {
	r, err := os.OpenRoot(root)
	if err != nil {
		return fmt.Errorf("frontend setup: %w", err)
	}
	defer r.Close()
	files := c.SystemFiles()
	keep := map[string]bool{}
	for _, f := range files {
		rel := strings.TrimPrefix(f.Path, "/")
		keep[rel] = true
		if err := r.MkdirAll(path.Dir(rel), 0o755); err != nil {
			return fmt.Errorf("frontend setup: %w", err)
		}
		if err := atomicfile.Write(filepath.Join(root, rel), []byte(f.Content), f.Mode); err != nil {
			return fmt.Errorf("frontend setup: %w", err)
		}
	}
	netDir := strings.TrimPrefix(NetworkDir, "/")
	if ents, err := os.ReadDir(filepath.Join(root, netDir)); err == nil {
		for _, e := range ents {
			rel := path.Join(netDir, e.Name())
			if strings.Contains(e.Name(), "ironbark-") && !keep[rel] {
				if err := r.Remove(rel); err != nil {
					return fmt.Errorf("frontend setup: remove the stale %s: %w", rel, err)
				}
				log.Info("removed a network file the configuration no longer names", "file", "/"+rel)
			}
		}
	}
	zone := path.Join("/usr/share/zoneinfo", c.TimeZone)
	if _, err := r.Stat(strings.TrimPrefix(zone, "/")); err == nil {
		_ = r.Remove("etc/localtime")
		if err := r.Symlink(zone, "etc/localtime"); err != nil {
			return fmt.Errorf("frontend setup: time zone: %w", err)
		}
	} else {
		log.Warn("time zone not in /usr/share/zoneinfo; /etc/localtime left as it is", "zone", c.TimeZone)
	}
	if h := ShadowHash(c.Admin.PasswordHash); h != "" {
		if err := setShadowHash(root, "root", h); err != nil {
			return err
		}
	} else {
		log.Warn("the admin password hash is not SHA-512 crypt (an older answer file): root's password is left as it is")
	}
	if c.Admin.SSHKey != "" {
		if err := addAuthorizedKey(r, "root/.ssh/authorized_keys", c.Admin.SSHKey); err != nil {
			return err
		}
	}
	return nil
}

// setShadowHash gives user the password hash h in root's /etc/shadow.
func setShadowHash(root, user, h string) error {
	p := filepath.Join(root, "etc/shadow")
	b, err := os.ReadFile(p)
	if err != nil {
		return fmt.Errorf("frontend setup: root password: %w", err)
	}
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	found := false
	for i, l := range lines {
		f := strings.Split(l, ":")
		if len(f) >= 2 && f[0] == user {
			f[1] = h
			lines[i], found = strings.Join(f, ":"), true
		}
	}
	if !found {
		return fmt.Errorf("frontend setup: root password: no %s in /etc/shadow", user)
	}
	return atomicfile.Write(p, []byte(strings.Join(lines, "\n")+"\n"), 0o640)
}

// addAuthorizedKey adds key to an authorized_keys file unless it is
// there; keys put there by hand stay.
func addAuthorizedKey(r *os.Root, rel, key string) error {
	if err := r.MkdirAll(path.Dir(rel), 0o700); err != nil {
		return fmt.Errorf("frontend setup: ssh key: %w", err)
	}
	if err := r.Chmod(path.Dir(rel), 0o700); err != nil {
		return fmt.Errorf("frontend setup: ssh key: %w", err)
	}
	old, err := r.ReadFile(rel)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("frontend setup: ssh key: %w", err)
	}
	for _, l := range strings.Split(string(old), "\n") {
		if strings.TrimSpace(l) == strings.TrimSpace(key) {
			return nil
		}
	}
	s := string(old)
	if s != "" && !strings.HasSuffix(s, "\n") {
		s += "\n"
	}
	return r.WriteFile(rel, []byte(s+strings.TrimSpace(key)+"\n"), 0o600)
}

// SetHostname sets the running system's host name (the setup does it on
// the frontend itself, root "/").
func (c Config) SetHostname() error {
	short, _, _ := strings.Cut(c.FQDN, ".")
	if err := syscall.Sethostname([]byte(short)); err != nil {
		return fmt.Errorf("frontend setup: hostname: %w", err)
	}
	return nil
}
