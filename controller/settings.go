package controller

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"

	"ironbark/internal/atomicfile"
	"ironbark/internal/datadir"
	"ironbark/internal/nodeapi"
)

// Settings are the controller's settings in DIR/controller.json: what the
// administrator edits (region, public addresses, VM types) and what the
// controller remembers for the other commands (the store URL, the EC2
// endpoint it answers at).
type Settings struct {
	Region          string           `json:"region,omitempty"`
	DB              string           `json:"db,omitempty"`
	Endpoint        string           `json:"endpoint,omitempty"`
	PublicAddresses []string         `json:"publicAddresses,omitempty"`
	VMTypes         []nodeapi.VMType `json:"vmTypes,omitempty"`
	// InstanceSubnet is where instances' private addresses come from
	// (Config.InstanceSubnet): the nodes' bridge subnet.
	InstanceSubnet string `json:"instanceSubnet,omitempty"`
	// ClusterSubnets gives clusters their own instance subnet by name
	// (Config.ClusterSubnets); `ironbark cluster set --instance-subnet`
	// takes precedence.
	ClusterSubnets map[string]string `json:"clusterSubnets,omitempty"`
	// AuditRetentionDays, when above 0, is how long audit entries are
	// kept: the controller deletes older ones every hour. 0 keeps them
	// all (`ironbark audit prune` deletes by hand).
	AuditRetentionDays int `json:"auditRetentionDays,omitempty"`
}

// ReservedSubnets are the instance subnets the settings hold, by owner, for
// the overlap check of a cluster's own: the cloud's default (DefaultInstanceSubnet
// when unset) and clusterSubnets.
func (s Settings) ReservedSubnets() map[string]string {
	def := DefaultInstanceSubnet
	if p, err := netip.ParsePrefix(s.InstanceSubnet); err == nil {
		def = p.Masked().String()
	}
	out := map[string]string{"instanceSubnet (controller.json)": def}
	for name, cidr := range s.ClusterSubnets {
		out["cluster "+name] = cidr
	}
	return out
}

// LoadSettings reads DIR/controller.json; a missing file is empty settings.
func LoadSettings(dataDir string) (Settings, error) {
	var s Settings
	b, err := os.ReadFile(datadir.Dir(dataDir).Settings())
	if errors.Is(err, fs.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return s, fmt.Errorf("settings: %w", err)
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("settings %s: %w", datadir.Dir(dataDir).Settings(), err)
	}
	if s.InstanceSubnet != "" {
		if _, _, err := parseInstanceSubnet(s.InstanceSubnet); err != nil {
			return s, fmt.Errorf("settings %s: %w", datadir.Dir(dataDir).Settings(), err)
		}
	}
	if err := CheckSubnets(s.ReservedSubnets()); err != nil {
		return s, fmt.Errorf("settings %s: %w", datadir.Dir(dataDir).Settings(), err)
	}
	if s.AuditRetentionDays < 0 {
		return s, fmt.Errorf("settings %s: auditRetentionDays %d: want 0 (keep all) or more", datadir.Dir(dataDir).Settings(), s.AuditRetentionDays)
	}
	if len(s.VMTypes) > 0 {
		if err := checkVMTypes(s.VMTypes); err != nil {
			return s, fmt.Errorf("settings %s: %w", datadir.Dir(dataDir).Settings(), err)
		}
	}
	return s, nil
}

// DefaultEndpoint is the EC2 URL credentials name before a controller has
// run and remembered its own.
const DefaultEndpoint = "https://127.0.0.1:8773/"

// Resolved is s with what it leaves out filled in: DefaultRegion,
// DefaultVMTypes and DefaultEndpoint. It is what a controller runs with
// and what credentials name; the file keeps only what was set.
func (s Settings) Resolved() Settings {
	if s.Region == "" {
		s.Region = DefaultRegion
	}
	if len(s.VMTypes) == 0 {
		s.VMTypes = DefaultVMTypes()
	}
	if s.Endpoint == "" {
		s.Endpoint = DefaultEndpoint
	}
	return s
}

// SaveSettings writes DIR/controller.json atomically.
func SaveSettings(dataDir string, s Settings) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return fmt.Errorf("settings: %w", err)
	}
	return atomicfile.Write(datadir.Dir(dataDir).Settings(), append(b, '\n'), 0o600)
}

// StoreURL is the store every command of a data dir uses: the --db flag
// when given, else the URL the controller remembered, else the SQLite
// file DIR/ironbark.db.
func StoreURL(dataDir, flag string) (string, error) {
	if flag != "" {
		return flag, nil
	}
	s, err := LoadSettings(dataDir)
	if err != nil {
		return "", err
	}
	if s.DB != "" {
		return s.DB, nil
	}
	return datadir.Dir(dataDir).Store(), nil
}
