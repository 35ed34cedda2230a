package nodeagent

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"ironbark/internal/atomicfile"
	"ironbark/internal/nodeapi"
	"ironbark/internal/pki"
)

// Files in the state dir that make up the node's identity.
const (
	keyFile      = "node.key"
	certFile     = "node.crt"
	caFile       = "ca.crt"
	identityFile = "node.json"
)

// identity is who the node is to the controller.
type identity struct {
	NodeID     string `json:"nodeId"`
	Cluster    string `json:"cluster"`
	Controller string `json:"controller"`
}

// loadIdentity reads an earlier enrollment from dir, or reports
// os.ErrNotExist.
func loadIdentity(dir string) (identity, *tls.Config, error) {
	var id identity
	b, err := os.ReadFile(filepath.Join(dir, identityFile))
	if err != nil {
		return id, nil, err
	}
	if err := json.Unmarshal(b, &id); err != nil {
		return id, nil, fmt.Errorf("%s: %w", identityFile, err)
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

// enroll spends the token: the key is made here and stays in dir; the
// controller signs a CSR for it.
func enroll(ctx context.Context, dir, controller, token, hostname string, capacity nodeapi.Capacity) (identity, error) {
	_, fp, err := nodeapi.ParseToken(token)
	if err != nil {
		return identity{}, err
	}
	key, err := pki.NewKey()
	if err != nil {
		return identity{}, err
	}
	csr, err := pki.CSR(key, hostname)
	if err != nil {
		return identity{}, err
	}
	c := nodeapi.NewClient(controller, pki.PinnedTLS(fp))
	defer c.Close()
	resp, err := c.Enroll(ctx, nodeapi.EnrollRequest{Token: token, Hostname: hostname, CSR: string(csr), Capacity: capacity})
	if err != nil {
		return identity{}, fmt.Errorf("enroll with %s: %w", controller, err)
	}
	kp, err := pki.KeyPEM(key)
	if err != nil {
		return identity{}, err
	}
	id := identity{NodeID: resp.NodeID, Cluster: resp.Cluster, Controller: controller}
	jb, _ := json.MarshalIndent(id, "", "  ")
	// The identity file goes last: its presence means enrolled.
	for _, f := range []struct {
		name string
		data []byte
		mode os.FileMode
	}{{keyFile, kp, 0o600}, {certFile, []byte(resp.Certificate), 0o644}, {caFile, []byte(resp.CA), 0o644}, {identityFile, jb, 0o644}} {
		if err := atomicfile.Write(filepath.Join(dir, f.name), f.data, f.mode); err != nil {
			return identity{}, err
		}
	}
	return id, nil
}

// permanentEnrollError reports whether retrying enrollment cannot help.
func permanentEnrollError(err error) bool {
	var se *nodeapi.StatusError
	return errors.As(err, &se) && se.Code/100 == 4
}
