package nodeagent

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"

	"ironbark/internal/atomicfile"
	"ironbark/internal/nodeapi"
	"ironbark/internal/pki"
)

// Files in the state dir that make up the node's identity. node.json is
// the one node identity format (nodeapi.Identity) with NodeID set and no
// token.
const (
	keyFile      = "node.key"
	certFile     = "node.crt"
	caFile       = "ca.crt"
	identityFile = "node.json"
)

// legacyIdentity is the state dir's node.json before it took the installer's
// format; agents enrolled then keep working.
type legacyIdentity struct {
	NodeID     string `json:"nodeId"`
	Cluster    string `json:"cluster"`
	Controller string `json:"controller"`
}

// loadIdentity reads an earlier enrollment from dir, or reports
// os.ErrNotExist.
func loadIdentity(dir string) (nodeapi.Identity, *tls.Config, error) {
	b, err := os.ReadFile(filepath.Join(dir, identityFile))
	if err != nil {
		return nodeapi.Identity{}, nil, err
	}
	id, err := nodeapi.ParseIdentity(b)
	if err != nil {
		var old legacyIdentity
		if jerr := json.Unmarshal(b, &old); jerr != nil || old.NodeID == "" {
			return id, nil, fmt.Errorf("%s: %w", identityFile, err)
		}
		id = nodeapi.Identity{NodeID: old.NodeID, Cluster: old.Cluster, ControllerURL: old.Controller}
	}
	if id.NodeID == "" {
		return id, nil, fmt.Errorf("%s: no nodeId: not an enrolled node's identity", identityFile)
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, certFile), filepath.Join(dir, keyFile))
	if err != nil {
		return id, nil, fmt.Errorf("node certificate: %w", err)
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, caFile))
	if err != nil {
		return id, nil, fmt.Errorf("ca certificate: %w", err)
	}
	tc, err := pki.ClientTLS(cert, caPEM)
	return id, tc, err
}

// localMACs lists this machine's Ethernet addresses: a token the installer
// got is bound to one of them.
func localMACs() []string {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil
	}
	seen := map[string]bool{}
	var out []string
	for _, ifc := range ifs {
		if len(ifc.HardwareAddr) != 6 || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		m := ifc.HardwareAddr.String()
		if !seen[m] {
			seen[m] = true
			out = append(out, m)
		}
	}
	sort.Strings(out)
	return out
}

// enroll spends the token: the key is made here and stays in dir; the
// controller signs a CSR for it.
func enroll(ctx context.Context, dir, controller, token, hostname string, capacity nodeapi.Capacity) (nodeapi.Identity, error) {
	_, fp, err := nodeapi.ParseToken(token)
	if err != nil {
		return nodeapi.Identity{}, err
	}
	key, err := pki.NewKey()
	if err != nil {
		return nodeapi.Identity{}, err
	}
	csr, err := pki.CSR(key, hostname)
	if err != nil {
		return nodeapi.Identity{}, err
	}
	c := nodeapi.NewClient(controller, pki.PinnedTLS(fp))
	defer c.Close()
	resp, err := c.Enroll(ctx, nodeapi.EnrollRequest{Token: token, Hostname: hostname, CSR: string(csr),
		Capacity: capacity, MACs: localMACs()})
	if err != nil {
		return nodeapi.Identity{}, fmt.Errorf("enroll with %s: %w", controller, err)
	}
	kp, err := pki.KeyPEM(key)
	if err != nil {
		return nodeapi.Identity{}, err
	}
	id := nodeapi.Identity{Hostname: hostname, Cluster: resp.Cluster, ControllerURL: controller, CAFingerprint: fp, NodeID: resp.NodeID}
	// The identity file goes last: its presence means enrolled.
	for _, f := range []struct {
		name string
		data []byte
		mode os.FileMode
	}{{keyFile, kp, 0o600}, {certFile, []byte(resp.Certificate), 0o644}, {caFile, []byte(resp.CA), 0o644}, {identityFile, id.Marshal(), 0o600}} {
		if err := atomicfile.Write(filepath.Join(dir, f.name), f.data, f.mode); err != nil {
			return nodeapi.Identity{}, err
		}
	}
	return id, nil
}

// permanentEnrollError reports whether retrying enrollment cannot help: the
// controller refused the request (4xx). Server faults (5xx) and network
// errors are retried.
func permanentEnrollError(err error) bool {
	var se *nodeapi.StatusError
	return errors.As(err, &se) && se.Code/100 == 4
}

// applyIdentityFile fills what the configuration leaves empty from the
// installer's identity file.
func applyIdentityFile(cfg *Config) error {
	if cfg.IdentityFile == "" {
		return nil
	}
	id, err := nodeapi.ReadIdentity(cfg.IdentityFile)
	if err != nil {
		return fmt.Errorf("node identity: %w", err)
	}
	if cfg.Controller == "" {
		cfg.Controller = id.ControllerURL
	}
	if cfg.Token == "" {
		cfg.Token = id.EnrollmentToken
	}
	if cfg.Hostname == "" {
		cfg.Hostname = id.Hostname
	}
	return nil
}

// scrubToken rewrites the installer's identity file without the token once
// it is spent, so the file holds no secret worth reading.
func (a *Agent) scrubToken() {
	if a.cfg.IdentityFile == "" {
		return
	}
	id, err := nodeapi.ReadIdentity(a.cfg.IdentityFile)
	if err != nil || id.EnrollmentToken == "" {
		return
	}
	id.EnrollmentToken = ""
	if err := atomicfile.Write(a.cfg.IdentityFile, id.Marshal(), 0o600); err != nil {
		a.log.Warn("could not drop the spent token from the identity file", "file", a.cfg.IdentityFile, "err", err)
	}
}
