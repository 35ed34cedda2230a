package frontend

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"ironbark/controller"
	"ironbark/controller/cluster"
	"ironbark/controller/sched"
	"ironbark/internal/datadir"
	"ironbark/internal/pki"
	"ironbark/internal/store"
	"ironbark/roll"
)

// Cluster0 is the availability zone the installer makes from the private
// network the answers describe.
const Cluster0 = "cluster0"

// InstalledDataDir is where the data partition is mounted on the
// installed frontend.
const InstalledDataDir = "/var/lib/ironbark"

// SSHKeysAttr is the global attribute that holds the keys root accepts on
// every installed node (the installer sets it to the admin's key).
const SSHKeysAttr = roll.SSHKeysAttr

// Config is DATA/frontend.json: what the installed frontend is, as the
// installer wrote it from the answers. Its boot reads it to bring the
// interfaces up and start the services.
type Config struct {
	Version int    `json:"version"`
	Name    string `json:"name"`
	FQDN    string `json:"fqdn"`
	Contact string `json:"contact,omitempty"`
	Public  struct {
		Interface string   `json:"interface"`
		DHCP      bool     `json:"dhcp,omitempty"`
		Address   string   `json:"address,omitempty"` // CIDR
		Gateway   string   `json:"gateway,omitempty"`
		DNS       []string `json:"dns,omitempty"`
	} `json:"public"`
	Clusters []ClusterNet `json:"clusters"`
	TimeZone string       `json:"timeZone"`
	NTP      []string     `json:"ntp,omitempty"`
	Rolls    []string     `json:"rolls"`
	Admin    struct {
		PasswordHash string `json:"passwordHash"`
		SSHKey       string `json:"sshKey,omitempty"`
	} `json:"admin"`
}

// ClusterNet is a cluster's private network: where its nodes PXE-boot.
type ClusterNet struct {
	Name         string `json:"name"`
	PXEInterface string `json:"pxeInterface"`
	Address      string `json:"address"` // the frontend's, CIDR
}

// FrontendConfig turns answers into the frontend's configuration.
func FrontendConfig(a Answers) (Config, error) {
	var c Config
	c.Version = Version
	c.Name, c.FQDN, c.Contact = a.Cluster.Name, a.Cluster.FQDN, a.Cluster.Contact
	c.Public.Interface, c.Public.DHCP = a.Public.Interface, a.Public.DHCP
	if !a.Public.DHCP {
		p, err := prefix(a.Public.Address, a.Public.Netmask)
		if err != nil {
			return c, err
		}
		c.Public.Address, c.Public.Gateway, c.Public.DNS = p.String(), a.Public.Gateway, a.Public.DNS
	}
	priv, err := prefix(a.Private.Address, a.Private.Netmask)
	if err != nil {
		return c, err
	}
	c.Clusters = []ClusterNet{{Name: Cluster0, PXEInterface: a.Private.Interface, Address: priv.String()}}
	c.TimeZone, c.NTP, c.Rolls = a.Time.Zone, a.Time.NTP, a.Rolls
	c.Admin.PasswordHash, c.Admin.SSHKey = a.Admin.PasswordHash, a.Admin.SSHKey
	if a.Admin.Password != "" {
		if c.Admin.PasswordHash, err = HashPassword(a.Admin.Password); err != nil {
			return c, err
		}
	}
	return c, nil
}

// Env is DATA/frontend.env: the same settings as shell variables, for a
// boot script with nothing but busybox.
func (c Config) Env() string {
	var b strings.Builder
	kv := func(k, v string) { fmt.Fprintf(&b, "%s='%s'\n", k, strings.ReplaceAll(v, "'", "")) }
	kv("IRONBARK_NAME", c.Name)
	kv("IRONBARK_FQDN", c.FQDN)
	kv("IRONBARK_PUBLIC_IF", c.Public.Interface)
	if c.Public.DHCP {
		kv("IRONBARK_PUBLIC_DHCP", "yes")
	} else {
		kv("IRONBARK_PUBLIC_DHCP", "no")
		kv("IRONBARK_PUBLIC_ADDR", c.Public.Address)
		kv("IRONBARK_PUBLIC_GW", c.Public.Gateway)
		kv("IRONBARK_DNS", strings.Join(c.Public.DNS, " "))
	}
	kv("IRONBARK_ENDPOINT", c.Endpoint())
	kv("IRONBARK_CLUSTER", c.Clusters[0].Name)
	kv("IRONBARK_PRIVATE_IF", c.Clusters[0].PXEInterface)
	kv("IRONBARK_PRIVATE_ADDR", c.Clusters[0].Address)
	kv("IRONBARK_PRIVATE_IP", strings.Split(c.Clusters[0].Address, "/")[0])
	kv("IRONBARK_TZ", c.TimeZone)
	kv("IRONBARK_NTP", strings.Join(c.NTP, " "))
	return b.String()
}

// Endpoint is the EC2 URL: the public address when it is static, else
// the FQDN.
func (c Config) Endpoint() string {
	host := c.FQDN
	if !c.Public.DHCP {
		host = strings.Split(c.Public.Address, "/")[0]
	}
	return "https://" + host + ":8773/"
}

// StageDataDir writes the frontend's data directory (what becomes
// /var/lib/ironbark) into dir: frontend.json and .env, controller.json,
// the store with cluster0, the admin's SSH key, the answers (password
// hashed).
func StageDataDir(ctx context.Context, dir string, a Answers) error {
	c, err := FrontendConfig(a)
	if err != nil {
		return err
	}
	a.Admin.Password, a.Admin.PasswordHash = "", c.Admin.PasswordHash
	if err := os.MkdirAll(filepath.Join(dir, "install"), 0o700); err != nil {
		return err
	}
	js, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	ans, err := Marshal(a)
	if err != nil {
		return err
	}
	files := map[string]string{
		"frontend.json":        string(js) + "\n",
		"frontend.env":         c.Env(),
		"install/answers.yaml": string(ans),
	}
	if c.Admin.SSHKey != "" {
		files["admin/authorized_keys"] = c.Admin.SSHKey + "\n"
	}
	for p, s := range files {
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o700); err != nil {
			return err
		}
		if err := os.WriteFile(full, []byte(s), 0o600); err != nil {
			return fmt.Errorf("stage %s: %w", p, err)
		}
	}
	endpoint := c.Endpoint()
	if err := controller.SaveSettings(dir, controller.Settings{Endpoint: endpoint}); err != nil {
		return err
	}
	db, err := store.Open(ctx, filepath.Join(dir, "ironbark.db"))
	if err != nil {
		return err
	}
	defer db.Close()
	if err := db.Migrate(ctx, controller.Migrations()); err != nil {
		return err
	}
	reg, err := cluster.NewRegistry(ctx, db)
	if err != nil {
		return err
	}
	if err := reg.AddCluster(ctx, Cluster0, sched.Greedy); err != nil {
		return err
	}
	// Every node the frontend installs takes its admin's key for root
	// (the base roll's ssh node reads the attribute), as Rocks gave every
	// node the frontend root's key.
	if c.Admin.SSHKey != "" {
		if err := db.Migrate(ctx, roll.Migrations()); err != nil {
			return err
		}
		if err := roll.NewAttrs(db).Set(ctx, roll.ScopeGlobal, "", SSHKeysAttr, c.Admin.SSHKey); err != nil {
			return fmt.Errorf("stage the admin's key for the nodes: %w", err)
		}
	}
	// The cloud's administrator, with EC2 keys, so the frontend answers
	// its first request (eucarc under credentials/admin, paths as the
	// installed frontend sees them).
	admin, err := controller.EnsureAdmin(ctx, db)
	if err != nil {
		return err
	}
	// The cloud's CA, made now so the credentials carry it (ca.pem): the
	// clients verify the frontend from its first answer.
	ca, err := pki.LoadOrCreateCA(datadir.Dir(dir).PKI())
	if err != nil {
		return err
	}
	cdir, err := controller.WriteCredentials(dir, admin, endpoint, controller.DefaultRegion, ca.CertPEM())
	if err != nil {
		return err
	}
	for _, n := range []string{"eucarc", "config", "credentials"} {
		p := filepath.Join(cdir, n)
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if err := os.WriteFile(p, []byte(strings.ReplaceAll(string(b), dir, InstalledDataDir)), 0o600); err != nil {
			return err
		}
	}
	return db.Close()
}
