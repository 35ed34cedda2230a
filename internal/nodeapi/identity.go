package nodeapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
)

// DefaultIdentityPath is where an installed node finds its identity: the
// installer writes ironbark/node.json into the image's first partition (the
// FAT ESP), which appliances mount at /boot/efi (fmask=0077, so only root
// reads it).
const DefaultIdentityPath = "/boot/efi/ironbark/node.json"

// Identity is the one node identity format: the installer writes it (the
// HTTP boot server puts it in the install profile), ironbark-node reads it
// at start and, once enrolled, keeps it in its state dir with NodeID set and
// the token dropped.
type Identity struct {
	Hostname  string `json:"hostname"`
	Cluster   string `json:"cluster"`
	Appliance string `json:"appliance,omitempty"`
	// ControllerURL is the controller's node API, https://HOST:8774.
	ControllerURL string `json:"controllerUrl,omitempty"`
	// CAFingerprint is the hex SHA-256 of the cloud CA's public key: the
	// node trusts a controller whose chain ends in that CA.
	CAFingerprint string `json:"caFingerprint,omitempty"`
	// EnrollmentToken is spent by the first enrollment; "" afterwards.
	EnrollmentToken string `json:"enrollmentToken,omitempty"`
	// NodeID is set once the node has enrolled.
	NodeID string `json:"nodeId,omitempty"`
}

// ParseIdentity decodes an identity file and checks what is there: unknown
// keys are refused (a typo would otherwise be silently ignored), the
// controller URL must be https, and a token must match the CA fingerprint.
func ParseIdentity(b []byte) (Identity, error) {
	var id Identity
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&id); err != nil {
		return Identity{}, fmt.Errorf("node identity: %w", err)
	}
	if id.ControllerURL != "" {
		u, err := url.Parse(id.ControllerURL)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			return Identity{}, fmt.Errorf("node identity: controllerUrl %q: want https://HOST:PORT", id.ControllerURL)
		}
	}
	if id.EnrollmentToken != "" {
		_, fp, err := ParseToken(id.EnrollmentToken)
		if err != nil {
			return Identity{}, fmt.Errorf("node identity: %w", err)
		}
		if id.CAFingerprint != "" && !strings.EqualFold(fp, id.CAFingerprint) {
			return Identity{}, errors.New("node identity: the token's CA fingerprint is not caFingerprint")
		}
		if id.CAFingerprint == "" {
			id.CAFingerprint = fp
		}
	}
	id.CAFingerprint = strings.ToLower(id.CAFingerprint)
	return id, nil
}

// ReadIdentity reads and parses an identity file.
func ReadIdentity(path string) (Identity, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Identity{}, err
	}
	id, err := ParseIdentity(b)
	if err != nil {
		return Identity{}, fmt.Errorf("%s: %w", path, err)
	}
	return id, nil
}

// Marshal is the file form: indented JSON with a final newline.
func (id Identity) Marshal() []byte {
	b, _ := json.MarshalIndent(id, "", "  ")
	return append(b, '\n')
}
